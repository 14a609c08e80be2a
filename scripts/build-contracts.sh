#!/usr/bin/env bash
# Rebuilds the dev chain's contracts from their Solidity sources with solc
# from npm (solcjs, pinned), writing the bytecode the dev stacks deploy next to
# each source (`chain-service/contracts/<Name>.bin`, committed: nothing is
# compiled at build or test time).
#
#   bash scripts/build-contracts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SOLC_VERSION=0.8.28
TOOLS=${BOURSE_TOOLS_DIR:-/var/tmp/bourse-tools}
SOLCJS="$TOOLS/node_modules/.bin/solcjs"
if ! [[ -x "$SOLCJS" ]] || [[ "$("$SOLCJS" --version)" != "$SOLC_VERSION"* ]]; then
    mkdir -p "$TOOLS"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS" "solc@$SOLC_VERSION" >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for source in chain-service/contracts/*.sol; do
    name=$(basename "$source" .sol)
    (cd "$(dirname "$source")" && "$SOLCJS" --bin --optimize --optimize-runs 200 -o "$out" "$name.sol")
    cp "$out/${name}_sol_${name}.bin" "chain-service/contracts/$name.bin"
    echo "chain-service/contracts/$name.bin: $(wc -c < "chain-service/contracts/$name.bin") hex characters"
done
