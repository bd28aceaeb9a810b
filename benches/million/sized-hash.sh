#!/usr/bin/env bash
# The million bench in a network namespace whose established-connections hash is sized for
# the sockets it holds (README "One million", "Where the rest goes"): the box's own hash is
# sized at boot (262,144 buckets here), ~8 sockets a bucket at a million clients, and
# finding the receiving socket is most of what a loopback write costs past a plain write.
# A namespace made after `net.ipv4.tcp_child_ehash_entries` is set gets a hash that size.
#
#   sudo benches/million/sized-hash.sh [BUCKETS] -- [million bench options]
#   e.g. benches/million/sized-hash.sh 4194304 -- --ladder 1000000 --no-timeouts
#
# Root (sysctl, unshare). Sets tcp_child_ehash_entries, and tcp_mem and netdev_max_backlog,
# which are global and which the bench cannot raise from inside the namespace; puts all
# three back on exit, however it exits. The bench raises and restores its other sysctls.
set -euo pipefail
cd "$(dirname "$0")/../.."

buckets=4194304
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  buckets=$1
  shift
fi
[ "${1:-}" = "--" ] && shift

saved_ehash=$(sysctl -n net.ipv4.tcp_child_ehash_entries)
saved_mem=$(sysctl -n net.ipv4.tcp_mem | tr -s '\t ' ' ')
saved_backlog=$(sysctl -n net.core.netdev_max_backlog)
restore() {
  sysctl -q -w net.ipv4.tcp_child_ehash_entries="$saved_ehash"
  sysctl -q -w net.ipv4.tcp_mem="$saved_mem"
  sysctl -q -w net.core.netdev_max_backlog="$saved_backlog"
  echo "sized-hash: restored tcp_child_ehash_entries=$saved_ehash, tcp_mem=\"$saved_mem\", netdev_max_backlog=$saved_backlog"
}
trap restore EXIT

# tcp_mem: a quarter, half and three quarters of memory in pages, as the bench sets it.
pages=$(( $(getconf _PHYS_PAGES) ))
sysctl -q -w net.ipv4.tcp_child_ehash_entries="$buckets"
sysctl -q -w net.ipv4.tcp_mem="$((pages / 4)) $((pages / 2)) $((pages * 3 / 4))"
sysctl -q -w net.core.netdev_max_backlog=1000000
echo "sized-hash: a network namespace with $buckets established-hash buckets"

# Build outside the namespace (the registry is outside it too), then run there.
cargo bench --bench million --no-run
unshare --net sh -c 'ip link set lo up && exec "$0" bench --bench million -- "$@"' cargo "$@"
