#!/usr/bin/env bash
# weft.sh IP ETCD_IP: installs weft on a VM as an operator would on bare
# metal (docs/install.md): br_netfilter, the weft user, weftd and weftctl, the systemd unit
# and its environment file, the CNI plugin and its conflist; then starts
# weftd and waits until it is ready. Run by Vagrant as root; safe to run
# again.
set -euo pipefail

ip=$1
etcd_ip=$2
src=/weft
export DEBIAN_FRONTEND=noninteractive

for f in bin/weftd bin/weftctl bin/weft bin/weft-install-cni etc/systemd/weftd.service etc/systemd/weft.sysusers; do
	if [[ ! -s $src/$f ]]; then
		echo "weft.sh: $src/$f is missing: run make build on the host, then vagrant rsync" >&2
		exit 1
	fi
done

# Tools the checks use (ping, nc, jq, wg) and the standard CNI plugins, whose
# portmap the conflist chains.
apt-get update -qq
apt-get install -y -qq --no-install-recommends iputils-ping netcat-openbsd jq wireguard-tools containernetworking-plugins >/dev/null

# The interface that holds the private-network address is the underlay.
iface=$(ip -o -4 addr show | awk -v ip="$ip" '{ split($4, a, "/"); if (a[1] == ip) print $2 }')
if [[ -z $iface ]]; then
	echo "weft.sh: no interface holds $ip" >&2
	ip -o addr show >&2
	exit 1
fi

# br_netfilter, now and at every boot: weftd is not ready without it, and
# cannot load it itself.
modprobe br_netfilter
echo br_netfilter >/etc/modules-load.d/weft.conf

# The user weftd runs as.
install -D -m 0644 "$src/etc/systemd/weft.sysusers" /usr/lib/sysusers.d/weft.conf
systemd-sysusers

# Binaries.
install -m 0755 "$src/bin/weftd" "$src/bin/weftctl" /usr/local/bin/

# The CNI plugin and the conflist, with the DaemonSet's installer.
install -d -m 0755 /opt/cni/bin /etc/cni/net.d
ln -sf /usr/lib/cni/portmap /opt/cni/bin/portmap
conflist=$src/etc/cni/10-weft.conflist
if [[ ! -s $conflist ]]; then
	# The repository's example conflist is missing: use the DaemonSet's.
	tmp=$(mktemp -d)
	conflist=$tmp/10-weft.conflist
	printf '%s\n' '{"cniVersion": "1.0.0", "name": "weft", "plugins": [{"type": "weft"}, {"type": "portmap", "capabilities": {"portMappings": true}}]}' >"$conflist"
fi
"$src/bin/weft-install-cni" --plugin "$src/bin/weft" --conflist "$conflist" \
	--bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d

# Configuration: /etc/weft/weftd.env (every variable: etc/systemd/weftd.env).
install -d -m 0755 /etc/weft
key=$src/e2e/vagrant/.state/gossip.key
{
	echo "WEFTD_ETCD_ENDPOINTS=http://${etcd_ip}:2379"
	echo "WEFTD_NODE_NAME=$(hostname)"
	echo "WEFTD_IFACE=${iface}"
	echo "WEFTD_PUBLIC_IP=${ip}"
	if [[ -s $key ]]; then
		echo "WEFTD_GOSSIP_KEY_FILE=/etc/weft/gossip.key"
	fi
} >/etc/weft/weftd.env
if [[ -s $key ]]; then
	install -o weft -g weft -m 0600 "$key" /etc/weft/gossip.key
fi

# The unit.
install -m 0644 "$src/etc/systemd/weftd.service" /etc/systemd/system/weftd.service
systemctl daemon-reload
systemctl enable weftd >/dev/null
systemctl restart --no-block weftd

# Type=notify: the unit turns active once weftd has written the subnet file.
deadline=$((SECONDS + 120))
until systemctl is-active --quiet weftd; do
	if ((SECONDS > deadline)); then
		echo "weft.sh: weftd not ready within 120 s" >&2
		systemctl status weftd --no-pager >&2 || true
		journalctl -u weftd --no-pager -n 50 >&2
		exit 1
	fi
	sleep 1
done
echo "weft.sh: weftd is ready on $(hostname) ($ip on $iface):"
cat /run/weft/subnet.env
