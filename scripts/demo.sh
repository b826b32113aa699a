#!/usr/bin/env bash
# `make demo`: resolve the 2007 example pool, then deploy a small application on a local daemon
# (started on first use, with its own keys), show it, and take it down. State goes to a
# temporary folder, so the demo leaves nothing behind and can run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
sd=.venv/bin/sd-actors

echo "== sd-actors parse descriptions/examples/pool.sf   (the 2007 SmartDomains pool, resolved)"
"$sd" parse descriptions/examples/pool.sf | head -n 40
echo "   … (the whole tree: sd-actors parse descriptions/examples/pool.sf)"

demo=$(mktemp -d /tmp/sd-actors-demo.XXXXXX)
export XDG_STATE_HOME="$demo/state" XDG_CONFIG_HOME="$demo/config"
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
state="$XDG_STATE_HOME/sd-actors"
stop_daemon() {
    if [ -f "$state/daemon.json" ]; then
        kill "$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["pid"])' "$state/daemon.json")" 2>/dev/null || true
    fi
    rm -rf "$demo"
}
trap stop_daemon EXIT

echo
echo "== sd-actors daemon, keys (a daemon's and yours), and sd-actors up scripts/demo.sf"
"$sd" keys init --state-dir "$state" >/dev/null
user_key=$("$sd" keys init | sed -n 's/.*public key: //p')
daemon_key=$("$sd" keys show --state-dir "$state")
"$sd" keys authorize --state-dir "$state" -- "$user_key" >/dev/null
"$sd" keys trust "127.0.0.1:$port" -- "$daemon_key" >/dev/null
"$sd" daemon --bind "tcp://127.0.0.1:$port" --state-dir "$state" 2>"$demo/daemon.log" &
for _ in $(seq 100); do [ -f "$state/daemon.json" ] && break; sleep 0.1; done
"$sd" up scripts/demo.sf --name demo --host "127.0.0.1:$port"
echo
echo "== sd-actors status demo"
"$sd" status demo --host "127.0.0.1:$port"
echo
echo "== sd-actors down demo"
"$sd" down demo --host "127.0.0.1:$port"
