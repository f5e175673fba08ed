# shellcheck shell=bash
# Sourced by the benches that measure cairn against a peer (collections.sh, packets.sh):
# messages, and installing what a bench needs from Debian's packages. Set `bench` (the
# message prefix) before sourcing.
log() { echo "[${bench:?set bench before sourcing}] $*" >&2; }
die() { log "$*"; exit 1; }
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
apt_install() { # apt_install PACKAGE
  log "installing $1 (apt)"
  $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
}
need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return
  apt_install "$2"
  command -v "$1" >/dev/null 2>&1 || die "could not install $2"
}
# PostgreSQL 15's server binaries (initdb, pg_ctl), installed when missing.
pgbin=/usr/lib/postgresql/15/bin
need_postgres() {
  need pgbench postgresql-15
  [ -x "$pgbin/initdb" ] || apt_install postgresql-15
  [ -x "$pgbin/initdb" ] || die "no $pgbin/initdb"
}
