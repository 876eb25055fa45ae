#!/usr/bin/env bash
# Writes the SQL that takes a database from one schema to another, offline.
#   tools/prisma-diff/diff.sh new <name>    new migration from the last committed schema to the current one
#   tools/prisma-diff/diff.sh init          rewrite the initial migration (only before the first release)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[ -d "$here/node_modules/prisma" ] || npm --prefix "$here" install --no-audit --no-fund >/dev/null
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Prisma 6 wants a datasource url; the diff never uses it.
with_url() { sed 's/^  provider = "postgresql"$/  provider = "postgresql"\n  url = env("UNUSED_URL")/' "$1" | grep -v 'moduleFormat\|importFileExtension' > "$2"; }
with_url "$root/prisma/schema.prisma" "$tmp/to.prisma"
run() { (cd "$here" && UNUSED_URL=postgresql://x@localhost/x PRISMA_QUERY_ENGINE_LIBRARY="$here/package.json" ./node_modules/.bin/prisma migrate diff "$@" --script); }
case "${1:-}" in
  init)
    dir="$(ls -d "$root"/prisma/migrations/*_init | head -1)"
    run --from-empty --to-schema-datamodel "$tmp/to.prisma" | grep -v '^Loaded Prisma config' > "$dir/migration.sql"
    echo "wrote $dir/migration.sql" ;;
  new)
    name="${2:?name}"
    git -C "$root" show HEAD:prisma/schema.prisma > "$tmp/from.raw"
    with_url "$tmp/from.raw" "$tmp/from.prisma"
    dir="$root/prisma/migrations/$(date -u +%Y%m%d%H%M%S)_$name"
    mkdir -p "$dir"
    run --from-schema-datamodel "$tmp/from.prisma" --to-schema-datamodel "$tmp/to.prisma" | grep -v '^Loaded Prisma config' > "$dir/migration.sql"
    echo "wrote $dir/migration.sql" ;;
  *) echo "usage: $0 init | new <name>" >&2; exit 2 ;;
esac
