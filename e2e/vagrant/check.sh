#!/usr/bin/env bash
# check.sh: the connectivity checks of the netns e2e suite, run across the
# Vagrant VMs over SSH (vagrant up first; run.sh does both):
#
#   - weftd is active and ready on every node;
#   - two pods per node (made by the weft CNI plugin);
#   - every pod reaches every other pod, on its own node and on the others,
#     by ICMP and by TCP;
#   - every node reaches every pod on the other nodes;
#   - a DF packet of exactly the pod MTU crosses between nodes, one byte
#     more does not.
#
# It prints one line per check and a summary, removes the pods it made, and
# exits non-zero when any check failed.
set -euo pipefail
cd "$(dirname "$0")"

nodes=(weft1 weft2 weft3)
work=$(mktemp -d)
ssh_config=$work/ssh_config
vagrant ssh-config "${nodes[@]}" >"$ssh_config"

on() {
	local node=$1
	shift
	ssh -F "$ssh_config" -o LogLevel=ERROR -o ControlMaster=auto \
		-o "ControlPath=$work/%h.sock" -o ControlPersist=120 \
		"$node" sudo bash /weft/e2e/vagrant/node.sh "$@"
}

passed=0
failed=0
check() {
	local what=$1
	shift
	if "$@"; then
		echo "ok    $what"
		passed=$((passed + 1))
	else
		echo "FAIL  $what"
		failed=$((failed + 1))
	fi
}

pods=()
declare -A pod_node pod_ip
cleanup() {
	for pod in "${pods[@]}"; do
		on "${pod_node[$pod]}" pod-del "$pod" || true
	done
	for node in "${nodes[@]}"; do
		ssh -F "$ssh_config" -o "ControlPath=$work/%h.sock" -O exit "$node" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

for node in "${nodes[@]}"; do
	check "$node: weftd active and ready" on "$node" ready
done

for node in "${nodes[@]}"; do
	for i in 1 2; do
		pod=$node-pod$i
		pods+=("$pod")
		pod_node[$pod]=$node
		pod_ip[$pod]=$(on "$node" pod-add "$pod")
		echo "      pod $pod on $node: ${pod_ip[$pod]}"
	done
done

for src in "${pods[@]}"; do
	for dst in "${pods[@]}"; do
		[[ $src == "$dst" ]] && continue
		check "$src -> $dst (${pod_ip[$dst]}) icmp" on "${pod_node[$src]}" ping "$src" "${pod_ip[$dst]}"
		check "$src -> $dst (${pod_ip[$dst]}) tcp" on "${pod_node[$src]}" tcp "$src" "${pod_ip[$dst]}"
	done
done

for node in "${nodes[@]}"; do
	for dst in "${pods[@]}"; do
		[[ ${pod_node[$dst]} == "$node" ]] && continue
		check "$node -> $dst (${pod_ip[$dst]}) icmp" on "$node" node-ping "${pod_ip[$dst]}"
	done
done

check "weft1-pod1 -> weft2-pod1: DF packet of the pod MTU crosses, +1 byte does not" \
	on weft1 mtu weft1-pod1 "${pod_ip[weft2-pod1]}"

for node in "${nodes[@]}"; do
	echo "---- $node"
	on "$node" status || true
done

echo "$passed passed, $failed failed"
((failed == 0))
