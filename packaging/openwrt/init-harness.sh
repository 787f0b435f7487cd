# Runs an installed OpenWrt init script's start_service under sh, with stand-ins for what OpenWrt's
# /etc/rc.common and /lib/functions.sh provide (procd_*, config_load, config_get, logger) that record the
# calls. Used by packaging/openwrt/test to check the script's own logic; it is not procd.
#
#   H=WORKDIR INIT=/ROOT/etc/init.d/outpost-agent UCI=FILE AGENT=PROGRAM sh packaging/openwrt/init-harness.sh
#
# Writes WORKDIR/log (logger calls), WORKDIR/procd (procd calls); the script's state directory is
# WORKDIR/state and its generated config WORKDIR/var/etc/outpost/agent.toml. Exits with start_service's status.
set -u
logger() { echo "logger $*" >>"$H/log"; }
procd_open_instance() { echo "open" >>"$H/procd"; }
procd_set_param() { echo "$*" >>"$H/procd"; }
procd_close_instance() { echo "close" >>"$H/procd"; }
procd_add_reload_trigger() { echo "reload_trigger $*" >>"$H/procd"; }
config_load() { CONFIG_FILE="$UCI"; }
# config_get VAR SECTION OPTION [DEFAULT], for a named section's option written on one line.
config_get() {
  _v=$(awk -v s="$2" -v o="$3" -v q="'" '
    $1 == "config" { cur = $3; gsub(q, "", cur) }
    $1 == "option" && cur == s && $2 == o { v = $3; gsub(q, "", v); print v; exit }' "$CONFIG_FILE")
  eval "$1=\"\${_v:-\${4:-}}\""
}
. "$INIT"
PROG="$AGENT"
UCI_FILE="$UCI"
STATE_DIR="$H/state"
AGENT_TOML="$H/var/etc/outpost/agent.toml"
start_service
