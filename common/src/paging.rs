//! Pages of a list: `?page=1&per_page=20` in, `{items, page, per_page, total}` out.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub const MAX_PER_PAGE: i64 = 100;
/// The highest page number asked for (its offset must fit).
pub const MAX_PAGE: i64 = 1_000_000;

/// The page a client asks for (1-based).
#[derive(Debug, Clone, Copy, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    pub page: Option<i64>,
    /// Items per page, 1 to 100 (default 20).
    pub per_page: Option<i64>,
}

impl PageQuery {
    /// `(page, per_page, offset)`, or a 400 for a page out of range.
    pub fn resolve(self) -> Result<(i64, i64, i64), ApiError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(20);
        if !(1..=MAX_PAGE).contains(&page) {
            return Err(ApiError::bad_request(
                "invalid_page",
                format!("page must be between 1 and {MAX_PAGE}"),
            ));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(ApiError::bad_request(
                "invalid_per_page",
                format!("per_page must be between 1 and {MAX_PER_PAGE}"),
            ));
        }
        let offset = (page - 1)
            .checked_mul(per_page)
            .ok_or_else(|| ApiError::bad_request("invalid_page", "page is out of range"))?;
        Ok((page, per_page, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_out_of_range_are_400_with_a_code() {
        let q = |page, per_page| PageQuery { page: Some(page), per_page: Some(per_page) }.resolve();
        assert_eq!(q(2, 20).unwrap(), (2, 20, 20));
        assert_eq!(q(i64::MAX, 100).unwrap_err().code, "invalid_page");
        assert_eq!(q(0, 20).unwrap_err().code, "invalid_page");
        assert_eq!(q(MAX_PAGE, MAX_PER_PAGE).unwrap().2, (MAX_PAGE - 1) * MAX_PER_PAGE);
        assert_eq!(q(1, 101).unwrap_err().code, "invalid_per_page");
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: i64,
    pub per_page: i64,
    /// Items in the whole list.
    pub total: i64,
}
