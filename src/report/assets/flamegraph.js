(function () {
  'use strict';
  var ID = __ID__;
  // F[i] = [parent, depth, start, value, end, label]; C = geometry.
  var F = __FRAMES__;
  var C = __CONF__;
  var me = document.currentScript;
  var svg = me && me.parentNode && me.parentNode.id === ID ? me.parentNode : document.getElementById(ID);
  if (!svg) return;
  var els = [];
  var gs = svg.querySelectorAll('.fg-frame');
  for (var k = 0; k < gs.length; k++) {
    var g = gs[k];
    els[Number(g.getAttribute('data-i'))] = {
      g: g,
      rect: g.querySelector('rect'),
      text: g.querySelector('text'),
      title: g.querySelector('title'),
    };
  }
  var details = svg.querySelector('.fg-details');
  var matchedText = svg.querySelector('.fg-matched');
  var resetBtn = svg.querySelector('.fg-reset');
  var searchBtn = svg.querySelector('.fg-search');
  var zoomed = 0;
  var matches = null;

  function fit(label, w) {
    var chars = Math.floor((w - 6) / (C.fontSize * C.charW));
    if (chars < 3) return '';
    return label.length <= chars ? label : label.slice(0, chars - 2) + '..';
  }
  function round2(v) {
    return Math.round(v * 100) / 100;
  }

  function draw() {
    var z = F[zoomed],
      zs = z[2],
      zv = z[3],
      zEnd = z[4];
    var ancestors = {};
    for (var a = z[0]; a >= 0; a = F[a][0]) ancestors[a] = true;
    for (var i = 0; i < F.length; i++) {
      var e = els[i];
      if (!e) continue;
      var f = F[i],
        x = 0,
        w = 0,
        show = false,
        parent = false;
      if (i >= zoomed && i < zEnd) {
        x = C.xpad + ((f[2] - zs) / zv) * C.width;
        w = (f[3] / zv) * C.width;
        show = w >= C.minWidth;
      } else if (ancestors[i]) {
        x = C.xpad;
        w = C.width;
        show = true;
        parent = true;
      }
      e.g.classList.toggle('fg-hidden', !show);
      e.g.classList.toggle('fg-parent', parent);
      e.g.classList.toggle('fg-match', !!(matches && matches[i]));
      if (!show) continue;
      e.rect.setAttribute('x', String(round2(x)));
      e.rect.setAttribute('width', String(round2(w)));
      e.text.setAttribute('x', String(round2(x + 3)));
      e.text.textContent = fit(f[5], w);
    }
    resetBtn.classList.toggle('fg-hidden', zoomed === 0);
  }

  function zoom(i) {
    zoomed = i >= 0 && i < F.length ? i : 0;
    draw();
  }

  function search(term) {
    if (!term) {
      matches = null;
      matchedText.textContent = '';
      searchBtn.textContent = 'Search';
      draw();
      return;
    }
    var test;
    try {
      var re = new RegExp(term);
      test = function (s) {
        return re.test(s);
      };
    } catch (_err) {
      test = function (s) {
        return s.indexOf(term) >= 0;
      };
    }
    matches = [];
    var sum = 0,
      coveredUntil = 0;
    for (var i = 1; i < F.length; i++) {
      matches[i] = test(F[i][5]);
      // Count each matched path once: skip matches nested inside an earlier match.
      if (matches[i] && i >= coveredUntil) {
        sum += F[i][3];
        coveredUntil = F[i][4];
      }
    }
    var pct = F[0][3] > 0 ? (sum / F[0][3]) * 100 : 0;
    matchedText.textContent = 'Matched: ' + pct.toFixed(1) + '%';
    searchBtn.textContent = 'Reset Search';
    draw();
  }

  svg.addEventListener('click', function (ev) {
    var t = ev.target;
    if (!t || !t.closest) return;
    var g = t.closest('.fg-frame');
    if (g && svg.contains(g)) return zoom(Number(g.getAttribute('data-i')));
    if (t.closest('.fg-reset')) return zoom(0);
    if (t.closest('.fg-search')) {
      if (matches) return search(null);
      var term = window.prompt('Search frames (regular expression):', '');
      if (term) search(term);
    }
  });
  svg.addEventListener('mouseover', function (ev) {
    var g = ev.target && ev.target.closest ? ev.target.closest('.fg-frame') : null;
    if (g && svg.contains(g)) details.textContent = els[Number(g.getAttribute('data-i'))].title.textContent;
  });
  svg.addEventListener('mouseout', function () {
    details.textContent = C.hint;
  });
  // For a host page: svg.dispatchEvent(new CustomEvent('leakscope-search', { detail: 'ngx_' })).
  svg.addEventListener('leakscope-search', function (ev) {
    search(ev.detail ? String(ev.detail) : null);
  });
  svg.addEventListener('leakscope-reset', function () {
    search(null);
    zoom(0);
  });
})();
