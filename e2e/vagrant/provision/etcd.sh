#!/usr/bin/env bash
# etcd.sh IP BACKEND: runs Debian's etcd on the first VM, reachable on the
# private network at IP:2379, and writes weft's network config into it (with
# the given backend type). Run by Vagrant as root; safe to run again.
set -euo pipefail

ip=$1
backend=$2
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null

# Debian's etcd.service reads /etc/default/etcd. Only the client URLs change:
# the single member keeps its peer URL on the loopback.
cat >/etc/default/etcd <<CONF
ETCD_LISTEN_CLIENT_URLS=http://${ip}:2379,http://127.0.0.1:2379
ETCD_ADVERTISE_CLIENT_URLS=http://${ip}:2379
CONF
systemctl enable etcd >/dev/null
systemctl restart etcd

deadline=$((SECONDS + 60))
until ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 endpoint health >/dev/null 2>&1; do
	if ((SECONDS > deadline)); then
		echo "etcd.sh: etcd did not become healthy within 60 s" >&2
		journalctl -u etcd --no-pager -n 50 >&2
		exit 1
	fi
	sleep 1
done
echo "etcd.sh: etcd is healthy on http://${ip}:2379"

# The network config (docs/configuration.md), validated by weftctl.
install -d -m 0755 /etc/weft
cat >/etc/weft/network-config.json <<CONF
{
  "Network": "10.244.0.0/16",
  "SubnetLen": 24,
  "Backend": {"Type": "${backend}"}
}
CONF
WEFTCTL_ETCD_ENDPOINTS=http://127.0.0.1:2379 /weft/bin/weftctl config set -f /etc/weft/network-config.json
echo "etcd.sh: network config written (backend ${backend})"
