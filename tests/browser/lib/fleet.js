// The config body the browser tests run: 20 simulated hosts on this machine and the tasks
// each test needs (all `transport = "local"`, so nothing here needs ssh).

export const HOSTS = [
  ...Array.from({ length: 16 }, (_, i) => `web-${String(i + 1).padStart(2, '0')}`),
  'db-01', 'db-02', 'db-03', 'db-04',
];

const hosts = `[hosts]
web = [${HOSTS.slice(0, 16).map((h) => `"${h}"`).join(', ')}]
db = [${HOSTS.slice(16).map((h) => `"${h}"`).join(', ')}]
`;

/** A rolling deploy over 20 hosts: a canary, then waves of 5; stdout, stderr and ANSI. */
const deploy = `[[tasks]]
name = "deploy"
description = "Rolling deploy: one canary, then waves of 5"
hosts = ["web", "db"]
transport = "local"
batch = [1, 5]
timeout_secs = 60
script = '''
set -eu
n=$((10#\${SHIPWATCH_HOST##*-}))
echo $'\\e[1m==> deploying to '"$SHIPWATCH_HOST"$'\\e[0m'
for pct in 25 50 75 100; do
  sleep 0.$(( (n * 7 + pct) % 3 + 1 ))
  echo "  downloaded $pct%"
done
if [ $((n % 4)) -eq 0 ]; then echo $'\\e[33mwarning:\\e[0m config key workers is deprecated' >&2; fi
echo $'\\e[32mok\\e[0m '"$SHIPWATCH_HOST is serving \${REVISION:-HEAD}"
'''

[[tasks.params]]
name = "REVISION"
pattern = "[0-9a-f]{7,40}"
`;

/** Like deploy but slow (about 8 s), for cancelling, reloading and killing mid-job. */
const slow = `[[tasks]]
name = "slow"
description = "Ten lines a second per host, for about eight seconds"
hosts = ["web", "db"]
transport = "local"
batch = 10
timeout_secs = 60
script = '''
for i in $(seq 1 40); do
  echo "$SHIPWATCH_HOST step $i"
  if [ $((i % 10)) -eq 0 ]; then echo "$SHIPWATCH_HOST checkpoint $i" >&2; fi
  sleep 0.1
done
'''
`;

/** Two of twenty hosts fail (web-03, db-02); max_failures lets the rest go on. */
const flaky = `[[tasks]]
name = "flaky"
description = "web-03 and db-02 fail"
hosts = ["web", "db"]
transport = "local"
batch = 10
max_failures = 2
timeout_secs = 60
script = '''
echo "deploying to $SHIPWATCH_HOST"
case "$SHIPWATCH_HOST" in
  web-03|db-02) echo $'\\e[31merror:\\e[0m disk full on '"$SHIPWATCH_HOST" >&2; exit 1 ;;
esac
echo "ok $SHIPWATCH_HOST"
'''
`;

/** Text that must stay text: markup and escape sequences. */
const hostile = `[[tasks]]
name = "hostile"
description = "Prints markup and ANSI escapes"
hosts = ["web-01"]
transport = "local"
script = '''
printf '%s\\n' '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
printf '\\e[31mred <b>not bold</b>\\e[0m plain \\e[38;5;208morange\\e[0m \\e[38;2;0;128;255;48;5;22mblue on green\\e[0m \\e]8;;http://x\\alink\\e]8;;\\a\\n'
printf 'progress 10%%\\rprogress 55%%\\rprogress 100%%\\n'
echo "& &amp; &lt;" >&2
'''
`;

/** A million lines from one host, as fast as the pipeline takes them. */
const big = `[[tasks]]
name = "big"
description = "One million lines"
hosts = ["web-01"]
transport = "local"
timeout_secs = 600
script = '''
awk 'BEGIN { for (i = 1; i <= 1000000; i++) printf "line %07d of the big log, some text to make it a typical width\\n", i }'
'''
`;

/** About 10,000 lines a second for a few seconds. */
const firehose = `[[tasks]]
name = "firehose"
description = "About 10,000 lines a second for 6 s"
hosts = ["web-01"]
transport = "local"
timeout_secs = 120
script = '''
perl -e '
  use Time::HiRes qw(time sleep);
  $| = 0; my $t0 = time;
  for my $k (1 .. 600) {
    print "fire $k line $_ with some typical text after it\\n" for 1 .. 100;
    STDOUT->flush;
    my $d = $t0 + $k * 0.01 - time; sleep $d if $d > 0;
  }'
'''
`;

/** The whole config body; `extra` adds [auth], [[users]] and the like. */
export function fleet(extra = '[auth]\nanonymous = "admin"\n') {
  return [hosts, extra, deploy, slow, flaky, hostile, big, firehose].join('\n');
}
