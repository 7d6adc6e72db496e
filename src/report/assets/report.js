(function () {
  'use strict';
  var dataEl = document.getElementById('leakscope-data');
  var pretty = null;
  function prettyJson() {
    if (pretty === null) pretty = JSON.stringify(JSON.parse(dataEl.textContent), null, 2) + '\n';
    return pretty;
  }
  var link = document.getElementById('download-json');
  if (dataEl && link) {
    try {
      link.href = URL.createObjectURL(new Blob([prettyJson()], { type: 'application/json' }));
      var size = document.getElementById('json-size');
      if (size) size.textContent = (pretty.length / 1024).toFixed(1) + ' KiB';
    } catch (err) {
      link.removeAttribute('href');
      link.textContent = 'JSON unavailable: ' + err;
    }
  }
  var raw = document.getElementById('raw-json');
  if (raw)
    raw.addEventListener('toggle', function () {
      var pre = raw.querySelector('pre');
      if (raw.open && pre && !pre.textContent) pre.textContent = prettyJson();
    });

  // Histogram scale toggle.
  var toggles = document.querySelectorAll('[data-scale-toggle]');
  Array.prototype.forEach.call(toggles, function (btn) {
    btn.addEventListener('click', function () {
      var scale = btn.getAttribute('data-scale-toggle');
      var fig = btn.closest('.step') || document;
      Array.prototype.forEach.call(fig.querySelectorAll('[data-scale-toggle]'), function (b) {
        b.setAttribute('aria-pressed', String(b === btn));
      });
      Array.prototype.forEach.call(fig.querySelectorAll('.hist-variant'), function (v) {
        v.hidden = v.getAttribute('data-scale') !== scale;
      });
    });
  });

  // Sortable tables: click a header; numbers sort by data-value, text by content.
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    var ths = table.querySelectorAll('thead th');
    Array.prototype.forEach.call(ths, function (th, col) {
      var btn = th.querySelector('button');
      if (!btn) return;
      btn.addEventListener('click', function () {
        var numeric = th.getAttribute('data-type') === 'number';
        var dir =
          th.getAttribute('aria-sort') === 'descending'
            ? 'ascending'
            : th.getAttribute('aria-sort') === 'ascending'
              ? 'descending'
              : numeric
                ? 'descending'
                : 'ascending';
        Array.prototype.forEach.call(ths, function (o) {
          o.removeAttribute('aria-sort');
        });
        th.setAttribute('aria-sort', dir);
        var tbody = table.tBodies[0];
        var rows = Array.prototype.slice.call(tbody.rows).map(function (r, i) {
          var cell = r.cells[col];
          var v = cell ? (cell.hasAttribute('data-value') ? cell.getAttribute('data-value') : cell.textContent) : '';
          return { r: r, i: i, v: numeric ? Number(v) : String(v).toLowerCase() };
        });
        var sign = dir === 'ascending' ? 1 : -1;
        rows.sort(function (a, b) {
          return a.v < b.v ? -sign : a.v > b.v ? sign : a.i - b.i;
        });
        rows.forEach(function (x) {
          tbody.appendChild(x.r);
        });
      });
    });
  });

  // Flame graph highlight, through the graph's own event API.
  var fg = document.getElementById('__FLAME_ID__');
  var input = document.getElementById('fg-search-input');
  function highlight(term) {
    if (fg) fg.dispatchEvent(new CustomEvent('leakscope-search', { detail: term || null }));
  }
  if (fg && input) {
    var timer = 0;
    input.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        highlight(input.value);
      }, 150);
    });
    Array.prototype.forEach.call(document.querySelectorAll('[data-fg-search]'), function (b) {
      b.addEventListener('click', function () {
        var term = b.getAttribute('data-fg-search').replace(/[.*+?^$()|[\]\\{}]/g, '\\$&');
        input.value = term;
        highlight(term);
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll('[data-fg-reset]'), function (b) {
      b.addEventListener('click', function () {
        input.value = '';
        fg.dispatchEvent(new CustomEvent('leakscope-reset'));
      });
    });
  }
})();
