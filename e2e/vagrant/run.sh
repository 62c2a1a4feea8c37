#!/usr/bin/env bash
# run.sh: weft's multi-VM end-to-end run (make e2e-vagrant, which builds
# ./bin first). Brings up the three VMs of the Vagrantfile, runs check.sh and
# destroys the VMs, also on failure; WEFT_VAGRANT_KEEP=1 keeps them for a
# look (vagrant ssh weft1; vagrant destroy -f when done).
#
# Needs, on the host: vagrant, a provider (VirtualBox or libvirt), rsync,
# ssh, and a Linux amd64 build of weft in ./bin (static binaries).
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd ../.. && pwd)

for b in weftd weftctl weft weft-install-cni; do
	if [[ ! -x $repo/bin/$b ]]; then
		echo "run.sh: $repo/bin/$b is missing: run make build first" >&2
		exit 1
	fi
done
for tool in vagrant rsync ssh; do
	if ! command -v "$tool" >/dev/null; then
		echo "run.sh: $tool is not installed; the Vagrant e2e needs vagrant, a VM provider (VirtualBox or libvirt), rsync and ssh" >&2
		exit 1
	fi
done

# One gossip key for the cluster (32 random bytes, base64), synced to the VMs.
mkdir -p .state
if [[ ! -s .state/gossip.key ]]; then
	(umask 077 && head -c 32 /dev/urandom | base64 >.state/gossip.key)
fi

cleanup() {
	if [[ ${WEFT_VAGRANT_KEEP:-0} == 1 ]]; then
		echo "run.sh: keeping the VMs (WEFT_VAGRANT_KEEP=1); remove them with: cd e2e/vagrant && vagrant destroy -f"
	else
		vagrant destroy -f
	fi
}
trap cleanup EXIT

vagrant up --provision
./check.sh
