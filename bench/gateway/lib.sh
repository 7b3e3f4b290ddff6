# bench/gateway/lib.sh: what the gateway benchmarks share (sourced). The
# caller sets TMP (a scratch directory) and NGINX; processes it starts go in
# PIDS and are stopped, and TMP removed, on exit.
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {  # port
  for _ in $(seq 1 500); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.01
  done
  echo "nothing listens on $1" >&2
  exit 1
}
# Writes the config of an nginx with `http { ... BODY }`, its prefix
# $TMP/NAME, and MAIN (more main-context directives) if given.
nginx_conf() {  # name workers body [main]
  local dir=$TMP/$1
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<NGX
worker_processes $2;
daemon off;
${4:-}
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 8192; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
  $3
}
NGX
}
# Starts that nginx in the background (its pid in PIDS).
start_nginx() {  # name workers body [main]
  nginx_conf "$@"
  local dir=$TMP/$1
  "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/logs/stderr" 2>&1 &
  PIDS+=($!)
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
