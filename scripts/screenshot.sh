#!/usr/bin/env bash
# Remakes the README's picture of the demo page (docs/images/demo-page.png): the browser test
# that sends the test pattern through `demo` in headless Chromium writes a full-page screenshot
# after its capture, and this runs that one test with the picture's path.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-chromium.sh
mkdir -p docs/images
OZ_DEMO_SCREENSHOT="$PWD/docs/images/demo-page.png" \
  cargo test --locked --test browser -- --exact \
  without_a_camera_or_when_it_is_refused_the_test_pattern_is_sent
echo "wrote docs/images/demo-page.png"
