#!/bin/sh
# Installs the Debian 12 packages swarmgate needs to build, test, demo and
# benchmark, and only those that are missing. Idempotent: prints nothing and
# does nothing when all are present.
set -eu

PKGS="pkg-config libuv1-dev node-llhttp uuid-dev libpq-dev libyaml-dev libssl-dev openssl libcriterion-dev
postgresql prometheus curl wrk nginx-light haproxy h2o squid clang libclang-rt-14-dev clang-format python3-aiohttp valgrind"
if [ "${SG_DEPS_EXTRA:-}" != "" ]; then PKGS="$PKGS $SG_DEPS_EXTRA"; fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "deps: need root or sudo to install:$missing" >&2; exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Debian's postgresql, nginx, haproxy, h2o and squid packages start system
# services when installed; swarmgate's tests and benchmark run their own
# servers (config files they write, on loopback ports they pick) and need none
# of them. policy-rc.d refuses every start during the install.
$SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
# Belt and braces for a daemon started some other way during the install:
# stop (and, under systemd, disable) the system service of each server
# package this run installed, and only those.
for pair in nginx-light:nginx haproxy:haproxy h2o:h2o squid:squid postgresql:postgresql; do
    case " $missing " in *" ${pair%%:*} "*) ;; *) continue ;; esac
    svc=${pair#*:}
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ]; then
        $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done
