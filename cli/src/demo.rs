//! `bourse demo`: the order saga walked through the gateway's REST API, as a
//! user would, with readable output: register, top up, reserve, reject,
//! idempotency, cancel.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::client::Gateway;
use serde_json::{Value, json};

struct Client {
    gateway: Gateway,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.call_with(method, path, token, body, None).await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        self.gateway.call(method, path, token, body.as_ref(), idempotency_key).await
    }

    async fn expect(
        &self,
        want: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self.call(method, path, token, body).await?;
        if status != want {
            bail!("{method} {path}: expected {want}, got {status}: {answer}");
        }
        Ok(answer)
    }

    async fn user(&self, email: &str) -> anyhow::Result<String> {
        let credentials = json!({"email": email, "password": "demo password 1"});
        self.expect(201, "POST", "/api/auth/users", None, Some(credentials.clone())).await?;
        let token = self.expect(200, "POST", "/api/token", None, Some(credentials)).await?;
        println!("  registered {email}, got a bearer token");
        Ok(token["access_token"].as_str().unwrap_or_default().to_string())
    }

    async fn show_accounts(&self, who: &str, token: &str) -> anyhow::Result<()> {
        let accounts = self.expect(200, "GET", "/api/users/me/accounts", Some(token), None).await?;
        let line: Vec<String> = accounts
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                format!(
                    "{} {} (+{} reserved)",
                    a["currency"].as_str().unwrap_or("?"),
                    a["available"].as_str().unwrap_or("?"),
                    a["reserved"].as_str().unwrap_or("?")
                )
            })
            .collect();
        println!("  {who}'s accounts: {}", line.join(", "));
        Ok(())
    }

    async fn wait_for(&self, token: &str, id: &str, status: &str) -> anyhow::Result<Value> {
        self.wait_until(token, &format!("/api/orders/{id}"), status).await
    }

    /// Reads `path` (an order or a trigger) until its status is `status`.
    async fn wait_until(&self, token: &str, path: &str, status: &str) -> anyhow::Result<Value> {
        for _ in 0..300 {
            let found = self.expect(200, "GET", path, Some(token), None).await?;
            if found["status"] == status {
                return Ok(found);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{path} did not become {status} in 15 s")
    }

    /// Alice guards 0.8 of her ETH with a stop-loss and a take-profit; a
    /// trade at 2100 fires the take-profit, she cancels the stop-loss.
    async fn triggers(&self, alice: &str, bob: &str) -> anyhow::Result<()> {
        println!("\n10. Alice guards her ETH: a stop-loss at 1900 and a take-profit at 2100, 0.4 ETH each");
        let mut ids = Vec::new();
        for (kind, level) in [("stop", "1900"), ("take_profit", "2100")] {
            let trigger = json!({"market": "ETH-USDT", "side": "sell", "kind": kind, "stop_price": level, "quantity": "0.4"});
            let placed = self.expect(202, "POST", "/api/triggers", Some(alice), Some(trigger)).await?;
            let path = format!("/api/triggers/{}", placed["id"].as_str().unwrap_or_default());
            self.wait_until(alice, &path, "active").await?;
            println!("  {kind} at {level}: active, 0.4 ETH held from now on");
            ids.push(path);
        }
        self.show_accounts("alice", alice).await?;
        println!("  Bob bids 0.4 at 2090, then sells 0.01 at 2100 to Alice: a trade at 2100");
        let bid =
            json!({"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2090", "quantity": "0.4"});
        let bid = self.expect(202, "POST", "/api/orders", Some(bob), Some(bid)).await?;
        self.wait_for(bob, bid["id"].as_str().unwrap_or_default(), "open").await?;
        let ask = json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2100", "quantity": "0.01"});
        let ask = self.expect(202, "POST", "/api/orders", Some(bob), Some(ask)).await?;
        self.wait_for(bob, ask["id"].as_str().unwrap_or_default(), "open").await?;
        let take = json!({"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2100", "quantity": "0.01"});
        self.expect(202, "POST", "/api/orders", Some(alice), Some(take)).await?;
        let fired = self.wait_until(alice, &ids[1], "fired").await?;
        let order = fired["order_id"].as_str().unwrap_or_default();
        let sold = self.wait_for(alice, order, "filled").await?;
        println!(
            "  the take-profit fired on the trade at {}: its market sell {order} {} (0.4 ETH at 2090)",
            fired["fired_trade_price"], sold["status"]
        );
        self.expect(202, "DELETE", &ids[0], Some(alice), None).await?;
        self.wait_until(alice, &ids[0], "cancelled").await?;
        println!("  Alice cancels the stop-loss: its 0.4 ETH are released");
        tokio::time::sleep(Duration::from_millis(300)).await; // settlement follows the fill
        self.show_accounts("alice", alice).await
    }
}

impl Client {
    /// `amount` of `currency` from the dev chain's faucet to the user's
    /// deposit address (`POST /api/users/me/wallets/faucet`: ETH sent, USDT
    /// minted), followed until it is credited; `false` when the stack has no faucet.
    async fn deposit(&self, token: &str, currency: &str, amount: &str) -> anyhow::Result<bool> {
        let mut sent = None;
        for _ in 0..300 {
            let body = json!({"currency": currency, "amount": amount});
            let (status, answer) =
                self.call("POST", "/api/users/me/wallets/faucet", Some(token), Some(body)).await?;
            match status {
                202 => {
                    sent = Some(answer);
                    break;
                }
                403 => return Ok(false),
                // The wallet is made a moment after the registration.
                409 => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => bail!("POST /api/users/me/wallets/faucet: {status}: {answer}"),
            }
        }
        let sent = sent.context("no wallet after 15 s")?;
        let tx = sent["tx_hash"].as_str().unwrap_or_default().to_string();
        println!(
            "  {amount} {currency} to the deposit address {}: tx {tx}",
            sent["address"].as_str().unwrap_or_default()
        );
        let mut seen = false;
        for _ in 0..600 {
            let page = self.expect(200, "GET", "/api/users/me/deposits", Some(token), None).await?;
            let deposit =
                page["items"].as_array().and_then(|d| d.iter().find(|d| d["tx_hash"] == tx.as_str()));
            match deposit {
                Some(d) if d["status"] == "credited" => {
                    println!(
                        "  credited with {} confirmations: {} {currency}",
                        d["confirmations"],
                        d["amount"].as_str().unwrap_or_default()
                    );
                    return Ok(true);
                }
                Some(d) if d["status"] == "pending" && !seen => {
                    println!(
                        "  seen in block {}: pending until {} confirmations (a block a second)",
                        d["block_number"], d["required_confirmations"]
                    );
                    seen = true;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the deposit {tx} was not credited in 60 s")
    }

    /// `eth` ETH from the user's wallet to a fresh outside address, followed until confirmed.
    async fn withdraw(&self, token: &str, eth: &str) -> anyhow::Result<()> {
        let to = alloy::signers::local::PrivateKeySigner::random().address().to_checksum(None);
        println!("\n11. Bob withdraws {eth} ETH to an outside address, {to}");
        let body = json!({"currency": "ETH", "amount": eth, "address": to});
        let key = Some("demo-bob-withdrawal");
        let (status, w) = self.call_with("POST", "/api/withdrawals", Some(token), Some(body), key).await?;
        anyhow::ensure!(status == 202, "POST /api/withdrawals: {status}: {w}");
        let id = w["id"].as_str().unwrap_or_default().to_string();
        let (amount, fee) = (w["amount"].as_str().unwrap_or_default(), w["fee"].as_str().unwrap_or_default());
        println!("  withdrawal {id}: {amount} ETH held with its fee of {fee} ETH");
        let mut sent = false;
        for _ in 0..600 {
            let w = self.expect(200, "GET", &format!("/api/withdrawals/{id}"), Some(token), None).await?;
            match w["status"].as_str().unwrap_or_default() {
                "confirmed" => {
                    let tx = w["tx_hash"].as_str().unwrap_or_default();
                    println!("  confirmed with {} confirmations: tx {tx}", w["confirmations"]);
                    return Ok(());
                }
                "sent" if !sent => {
                    println!("  sent from his wallet: tx {}", w["tx_hash"].as_str().unwrap_or_default());
                    sent = true;
                }
                "failed" | "refused" => bail!("withdrawal {id} {}: {}", w["status"], w["reason"]),
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("withdrawal {id} was not confirmed in 60 s")
    }
}

/// Runs the scenario against the gateway at `gateway`.
pub async fn run(gateway: &str) -> anyhow::Result<()> {
    let c = Client { gateway: Gateway::new(gateway) };
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    println!("\n== Bourse demo against {gateway}");

    println!("\n1. Two users register (each gets accounts in every currency)");
    let alice = c.user(&format!("alice-{run_id}@example.com")).await?;
    let bob = c.user(&format!("bob-{run_id}@example.com")).await?;

    println!("\n2. Alice deposits 10000 USDT: the dev faucet mints it to her wallet on the dev chain");
    let on_chain = c.deposit(&alice, "USDT", "10000").await?;
    if !on_chain {
        println!("  this stack has no faucet: Alice tops up 10000 USDT instead");
        let amount = json!({"amount": "10000"});
        c.expect(200, "POST", "/api/users/me/accounts/USDT/top-up", Some(&alice), Some(amount)).await?;
    }
    c.show_accounts("alice", &alice).await?;

    println!("\n3. Alice buys 1.5 ETH at 2000 USDT: 3000 USDT are reserved");
    let order =
        json!({"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2000", "quantity": "1.5"});
    let (_, placed) =
        c.call_with("POST", "/api/orders", Some(&alice), Some(order.clone()), Some(run_id)).await?;
    let id = placed["id"].as_str().context("no order id")?.to_string();
    println!("  order {id}: {}", placed["status"]);
    let open = c.wait_for(&alice, &id, "open").await?;
    println!("  order {id}: {} (funds reserved, sent to matching)", open["status"]);
    c.show_accounts("alice", &alice).await?;

    println!("\n4. Alice sends the same order again with the same Idempotency-Key");
    let (status, again) = c.call_with("POST", "/api/orders", Some(&alice), Some(order), Some(run_id)).await?;
    println!("  {status}: the same order {} - nothing reserved twice", again["id"]);

    println!("\n5. Bob, with no USDT, buys 0.1 BTC at 30000: rejected, and told why");
    let big =
        json!({"market": "BTC-USDT", "side": "buy", "type": "limit", "price": "30000", "quantity": "0.1"});
    let placed = c.expect(202, "POST", "/api/orders", Some(&bob), Some(big)).await?;
    let rejected = c.wait_for(&bob, placed["id"].as_str().unwrap_or_default(), "rejected").await?;
    println!("  order {}: rejected: {}", rejected["id"], rejected["reject_reason"]);

    println!("\n6. Bad input gets a clear 4xx");
    let bad =
        json!({"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2000.001", "quantity": "1"});
    let (status, error) = c.call("POST", "/api/orders", Some(&alice), Some(bad)).await?;
    println!("  {status}: {}", error["error"]);
    let (status, error) = c.call("GET", &format!("/api/orders/{id}"), Some(&bob), None).await?;
    println!("  bob reading alice's order -> {status}: {}", error["error"]);

    println!("\n7. Alice cancels her order: the reservation is released exactly");
    c.expect(202, "DELETE", &format!("/api/orders/{id}"), Some(&alice), None).await?;
    let cancelled = c.wait_for(&alice, &id, "cancelled").await?;
    println!("  order {id}: {}", cancelled["status"]);
    c.show_accounts("alice", &alice).await?;
    let steps = c.expect(200, "GET", &format!("/api/orders/{id}/transitions"), Some(&alice), None).await?;
    for step in steps.as_array().into_iter().flatten() {
        println!(
            "    {} -> {}  caused by {} {}",
            step["from_status"], step["to_status"], step["cause_type"], step["cause_id"]
        );
    }

    println!("\n8. Bob deposits 1.5 ETH: the dev faucet sends it to his wallet");
    if !(on_chain && c.deposit(&bob, "ETH", "1.5").await?) {
        println!("  this stack has no faucet: Bob tops up 1.5 ETH instead");
        let amount = json!({"amount": "1.5"});
        c.expect(200, "POST", "/api/users/me/accounts/ETH/top-up", Some(&bob), Some(amount)).await?;
    }
    println!("\n9. Bob sells 1 ETH at 2000 and Alice buys it: a trade, settled with fees");
    let sell =
        json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2000", "quantity": "1"});
    let sell = c.expect(202, "POST", "/api/orders", Some(&bob), Some(sell)).await?;
    let sell_id = sell["id"].as_str().unwrap_or_default().to_string();
    c.wait_for(&bob, &sell_id, "open").await?;
    let buy = json!({"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2000", "quantity": "1"});
    let buy = c.expect(202, "POST", "/api/orders", Some(&alice), Some(buy)).await?;
    let buy_id = buy["id"].as_str().unwrap_or_default().to_string();
    c.wait_for(&alice, &buy_id, "filled").await?;
    c.wait_for(&bob, &sell_id, "filled").await?;
    println!("  both orders filled (maker fee 0.1%, taker fee 0.2%, in the currency received)");
    tokio::time::sleep(Duration::from_millis(300)).await; // settlement follows the fill
    c.show_accounts("alice", &alice).await?;
    c.show_accounts("bob", &bob).await?;
    c.triggers(&alice, &bob).await?;
    if on_chain {
        c.withdraw(&bob, "0.25").await?;
        c.show_accounts("bob", &bob).await?;
    }

    println!("\nDone. Try it yourself: {gateway}/swagger-ui/   Trace the saga: bourse trace {id}\n");
    Ok(())
}
