// The master's -p / -c as nginx's own option parser (ngx_get_options, nginx 1.22) reads them from
// the title it writes ("nginx: master process " + argv joined by spaces). Pure logic, no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { masterPaths } from './find-process.js';

test('masterPaths: -p and -c separate or attached, grouped flags, -c relative to the prefix, defaults', () => {
  assert.deepEqual(
    masterPaths('nginx: master process /usr/sbin/nginx -p /tmp/a/ -c /tmp/a/nginx.conf -e /tmp/a/logs/error.log'),
    { prefix: '/tmp/a', conf: '/tmp/a/nginx.conf' },
  );
  assert.deepEqual(masterPaths('nginx: master process nginx -p/srv/x -cconf/n.conf'), {
    prefix: '/srv/x',
    conf: '/srv/x/conf/n.conf',
  });
  assert.deepEqual(masterPaths('nginx: master process nginx -g daemon off; -qp /srv/y'), {
    prefix: '/srv/y',
    conf: undefined,
  });
  assert.deepEqual(masterPaths('nginx: master process /usr/sbin/nginx -g daemon on; master_process on;'), {
    prefix: undefined,
    conf: undefined,
  });
  assert.deepEqual(masterPaths('nginx: master process nginx -c /etc/nginx/other.conf'), {
    prefix: undefined,
    conf: '/etc/nginx/other.conf',
  });
  // a -g value is skipped, never read as a flag
  assert.deepEqual(masterPaths('nginx: master process nginx -g -p -p /z'), { prefix: '/z', conf: undefined });
});
