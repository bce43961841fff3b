#!/bin/sh
# make format-check: every C source and header the repo tracks (third_party
# aside) is as clang-format (.clang-format) writes it. Lists the files that
# differ and exits 1; `make format` rewrites them.
set -eu
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "format-check: clang-format missing (make deps)" >&2; exit 2; }
bad=""
for f in $(git ls-files '*.c' '*.h' | grep -v '^third_party/'); do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
done
if [ -n "$bad" ]; then
    echo "format-check: not clang-formatted (run make format):"
    for f in $bad; do echo "  $f"; done
    exit 1
fi
echo "format-check: $(git ls-files '*.c' '*.h' | grep -vc '^third_party/') files clang-formatted"
