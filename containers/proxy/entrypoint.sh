#!/usr/bin/env bash
# Writes haproxy.cfg from APP_SERVERS and PROXY_PORT, then runs HAProxy in the foreground (logs on stderr).
set -euo pipefail
cfg=/tmp/haproxy.cfg
{
  cat <<CFG
global
    log stderr format raw local0 info
defaults
    mode http
    log global
    option httplog
    option dontlognull
    option forwardfor
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # A request whose connection to a replica failed goes to another one.
    retries 2
    option redispatch
resolvers dns
    # The container runtime's resolver: replicas that start after the proxy, or come back with a new address.
    parse-resolv-conf
    hold valid 5s
frontend public
    bind :${PROXY_PORT}
    default_backend app
backend app
    balance roundrobin
    # The app answers only Host names of ALLOWED_HOSTS (localhost always): the check names one.
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    http-response set-header X-Served-By %[srv_name]
    default-server check inter 2s fall 2 rise 1 init-addr last,libc,none resolvers dns
CFG
  for server in $APP_SERVERS; do
    echo "    server ${server%%:*} $server"
  done
} >"$cfg"
haproxy -c -q -f "$cfg"
exec haproxy -W -db -f "$cfg"
