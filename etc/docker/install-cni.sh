#!/bin/sh
# install-cni.sh: installs the weft CNI plugin and its network config list on
# the host. The DaemonSet's init container runs it with the host's
# /opt/cni/bin and /etc/cni/net.d mounted; it works on any host the same way
# (set the variables below).
#
# Each file is copied next to its destination under a temporary name and then
# renamed over it, so the container runtime never sees a half-written plugin
# or conflist, and a plugin binary that is running is replaced, not
# overwritten ("text file busy").
set -eu

src_bin=${WEFT_CNI_BIN:-/opt/weft/bin/weft}
src_conflist=${WEFT_CNI_CONFLIST:-/etc/weft/cni/10-weft.conflist}
bin_dir=${WEFT_CNI_BIN_DIR:-/host/opt/cni/bin}
conf_dir=${WEFT_CNI_CONF_DIR:-/host/etc/cni/net.d}

# install_file SRC DIR NAME MODE
install_file() {
	tmp="$2/.$3.weft-install.$$"
	trap 'rm -f "$tmp"' EXIT
	cp "$1" "$tmp"
	chmod "$4" "$tmp"
	mv -f "$tmp" "$2/$3"
	trap - EXIT
	echo "install-cni: installed $2/$3"
}

for f in "$src_bin" "$src_conflist"; do
	if [ ! -s "$f" ]; then
		echo "install-cni: $f is missing or empty" >&2
		exit 1
	fi
done
for d in "$bin_dir" "$conf_dir"; do
	if [ ! -d "$d" ]; then
		echo "install-cni: directory $d does not exist (is the host path mounted?)" >&2
		exit 1
	fi
done

install_file "$src_bin" "$bin_dir" weft 0755
install_file "$src_conflist" "$conf_dir" "$(basename "$src_conflist")" 0644
