#!/usr/bin/env bash
# Chromium for the report's browser test (tests/report_browser.rs): Debian's `chromium` package.
# Installs it when missing and this is root on a machine with apt-get; otherwise says what to do.
set -euo pipefail
for b in "${CHROME:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
  if [ -n "$b" ] && [ -x "$b" ]; then exit 0; fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Chromium for the report's browser test (apt-get install chromium)" >&2
  apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "the report's browser test needs Chromium: sudo apt-get install chromium (or set CHROME=/path/to/chrome)" >&2
fi
