#!/usr/bin/env bash
# node.sh COMMAND [ARGS]: the in-VM half of check.sh, run as root over SSH.
# "Pods" are network namespaces wired by the weft CNI plugin itself, called
# the way a container runtime calls it (CNI_* variables, config on stdin).
#
#   ready               weftd's unit is active and /readyz answers 200
#   pod-add POD         create pod POD (netns + CNI ADD), start a TCP
#                       listener in it, print its IPv4 address
#   pod-del POD         CNI DEL, stop the listener, remove the netns
#   ping POD ADDR       ICMP from POD to ADDR
#   tcp POD ADDR        TCP connect from POD to ADDR:7777
#   node-ping ADDR      ICMP from the node itself to ADDR
#   mtu POD ADDR        a DF packet of exactly the pod MTU crosses; one byte
#                       more does not
#   status              weftctl status and the subnet file
set -euo pipefail

port=7777
netconf='{"cniVersion": "1.0.0", "name": "weft", "type": "weft"}'

cni() {
	CNI_COMMAND=$1 CNI_CONTAINERID=vagrant-$2 CNI_NETNS=/var/run/netns/$2 \
		CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin /opt/cni/bin/weft <<<"$netconf"
}

http_status() {
	local line
	exec 3<>"/dev/tcp/127.0.0.1/9950"
	printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" >&3
	IFS= read -r line <&3
	exec 3>&-
	printf '%s\n' "$line"
}

cmd=${1:?usage: node.sh COMMAND [ARGS]}
shift
case $cmd in
ready)
	systemctl is-active --quiet weftd
	[[ $(http_status /readyz) == *" 200 "* ]]
	;;
pod-add)
	pod=$1
	ip netns add "$pod"
	result=$(cni ADD "$pod")
	setsid ip netns exec "$pod" nc -l -k "$port" </dev/null >/dev/null 2>&1 &
	echo $! >"/run/weft-check-$pod.pid"
	jq -r '[.ips[].address | select(contains(".")) | split("/")[0]][0]' <<<"$result"
	;;
pod-del)
	pod=$1
	if [[ -s /run/weft-check-$pod.pid ]]; then
		kill "$(cat "/run/weft-check-$pod.pid")" 2>/dev/null || true
		rm -f "/run/weft-check-$pod.pid"
	fi
	cni DEL "$pod" >/dev/null || true
	ip netns del "$pod" 2>/dev/null || true
	;;
ping)
	ip netns exec "$1" ping -c 2 -W 2 -q "$2" >/dev/null
	;;
tcp)
	ip netns exec "$1" nc -z -w 3 "$2" "$port"
	;;
node-ping)
	ping -c 2 -W 2 -q "$1" >/dev/null
	;;
mtu)
	mtu=$(sed -n 's/^WEFT_MTU=//p' /run/weft/subnet.env)
	# ICMP payload = MTU - 20 (IPv4 header) - 8 (ICMP header).
	ip netns exec "$1" ping -M "do" -c 2 -W 2 -q -s $((mtu - 28)) "$2" >/dev/null
	if ip netns exec "$1" ping -M "do" -c 1 -W 2 -q -s $((mtu - 27)) "$2" >/dev/null 2>&1; then
		echo "node.sh: a DF packet of $((mtu + 1)) bytes went through (pod MTU $mtu)" >&2
		exit 1
	fi
	;;
status)
	weftctl status || true
	cat /run/weft/subnet.env
	if ip link show weft-wg >/dev/null 2>&1; then wg show weft-wg; fi
	;;
*)
	echo "node.sh: unknown command $cmd" >&2
	exit 2
	;;
esac
