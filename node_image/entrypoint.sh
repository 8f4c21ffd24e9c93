#!/bin/sh
# Starts the node agent (python -m app.node). A node whose browsers are not
# headless (WEBGRID_HEADLESS=false) first gets a virtual display of its own.
set -eu

start_display() {
  display_file="$(mktemp)"
  # -displayfd picks a free display number: containers on the host network
  # share the abstract X11 socket names, so a fixed :99 would collide.
  Xvfb -displayfd 3 -screen 0 "${WEBGRID_SCREEN:-1920x1080x24}" -nolisten tcp \
    3>"$display_file" 2>"$HOME/xvfb.log" &
  xvfb_pid=$!
  tries=0
  while [ ! -s "$display_file" ]; do
    if ! kill -0 "$xvfb_pid" 2>/dev/null || [ "$tries" -ge 100 ]; then
      echo "entrypoint: Xvfb did not start; its log:" >&2
      cat "$HOME/xvfb.log" >&2
      exit 1
    fi
    tries=$((tries + 1))
    sleep 0.1
  done
  DISPLAY=":$(cat "$display_file")"
  export DISPLAY
}

case "${WEBGRID_HEADLESS:-true}" in
  0 | [Ff]alse | FALSE | [Nn]o | NO | [Oo]ff | OFF) start_display ;;
esac

exec python -m app.node "$@"
