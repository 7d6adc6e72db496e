// The developer / CI set-up (scripts/setup.sh) may install packages but must never stop, disable,
// restart, mask or reconfigure a host service: on a production host that would stop the very nginx
// being diagnosed. Reads the script's commands (comments removed); needs no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './helpers/build.js';

/** Commands that act on a running service or its start-up configuration. */
const SERVICE_ACTIONS: [RegExp, string][] = [
  [/\bsystemctl\b/, 'systemctl'],
  [/\bservice\s+\S+\s+(stop|restart|reload|force-reload|start)\b/, 'service NAME stop/restart'],
  [/\binvoke-rc\.d\b/, 'invoke-rc.d'],
  [/\bupdate-rc\.d\b/, 'update-rc.d'],
  [/\bdeb-systemd-invoke\b/, 'deb-systemd-invoke'],
  [/\bnginx\b[^\n]*\s-s\s/, 'nginx -s SIGNAL'],
  [/\b(pkill|killall)\b/, 'pkill / killall'],
  [/\bkill\s/, 'kill'],
  [/\/etc\/(nginx|systemd|init\.d)\b/, 'writes under /etc/nginx, /etc/systemd or /etc/init.d'],
  [/policy-rc\.d/, 'policy-rc.d'],
];

test('scripts/setup.sh never stops, disables, restarts or reconfigures a host service', () => {
  const text = readFileSync(join(REPO_ROOT, 'scripts/setup.sh'), 'utf8');
  const commands = text
    .split('\n')
    .map((l) => l.replace(/(^|\s)#.*$/, ''))
    .filter((l) => l.trim());
  assert.ok(
    commands.some((l) => /apt-get install/.test(l)),
    'the script installs packages (sanity check of the reading)',
  );
  for (const line of commands) {
    for (const [re, what] of SERVICE_ACTIONS) assert.doesNotMatch(line, re, `setup.sh runs ${what}: ${line.trim()}`);
  }
});
