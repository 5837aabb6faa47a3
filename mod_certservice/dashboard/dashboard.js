/*
 * CertService dashboard: reads GET /v1/overview, /v1/domains (with the
 * filters state=, q=, expiring=) and /v1/domains/NAME; writes nothing.
 * Every value goes into the page as text (textContent), never as HTML.
 */
'use strict';

(function () {
    var PAGE = 50;
    var filter = { state: '', q: '', expiring: '' };
    var next = null;
    var loadSerial = 0;

    function $(id) { return document.getElementById(id); }

    function api(path) {
        return fetch('../v1/' + path, {
            credentials: 'same-origin',
            headers: { 'Accept': 'application/json' }
        }).then(function (res) {
            return res.json().catch(function () { return {}; })
                .then(function (body) {
                    if (!res.ok) {
                        throw new Error(path.split('?')[0] + ': ' + res.status
                                        + ' ' + (body.error || res.statusText));
                    }
                    return body;
                });
        });
    }

    function showError(err) {
        var e = $('error');
        e.textContent = err ? String(err.message || err) : '';
        e.hidden = !err;
    }

    function time(sec) {
        if (!sec) {
            return 'never';
        }
        return new Date(sec * 1000).toISOString().replace('T', ' ')
            .replace(/\.\d+Z$/, ' UTC');
    }

    function day(sec) {
        return sec ? new Date(sec * 1000).toISOString().slice(0, 10) : '';
    }

    /* A serial, cut for the table (the whole one in the title). */
    function short(serial) {
        return serial && serial.length > 16 ? serial.slice(0, 16) + '\u2026'
            : serial || '';
    }

    function duration(sec) {
        if (sec < 120) {
            return sec + ' s';
        }
        if (sec < 7200) {
            return Math.round(sec / 60) + ' min';
        }
        if (sec < 172800) {
            return Math.round(sec / 3600) + ' h';
        }
        return Math.round(sec / 86400) + ' d';
    }

    /* A row of cells: each a string, or {text, cls}. */
    function row(tbody, cells, cls) {
        var tr = document.createElement('tr');
        if (cls) {
            tr.className = cls;
        }
        cells.forEach(function (c) {
            var td = document.createElement('td');
            if (c !== null && typeof c === 'object') {
                td.textContent = c.text;
                td.className = c.cls || '';
                if (c.title) {
                    td.title = c.title;
                }
            } else {
                td.textContent = c === null || c === undefined ? '' : c;
            }
            tr.appendChild(td);
        });
        tbody.appendChild(tr);
        return tr;
    }

    function empty(tbody, n, text) {
        var tr = document.createElement('tr');
        var td = document.createElement('td');
        tr.className = 'empty';
        td.colSpan = n;
        td.textContent = text;
        tr.appendChild(td);
        tbody.appendChild(tr);
    }

    function clear(el) {
        while (el.firstChild) {
            el.removeChild(el.firstChild);
        }
    }

    function dl(id, pairs) {
        var d = $(id);
        clear(d);
        pairs.forEach(function (p) {
            var dt = document.createElement('dt');
            var dd = document.createElement('dd');
            dt.textContent = p[0];
            dd.textContent = p[1];
            if (p[2]) {
                dd.className = p[2];
            }
            d.appendChild(dt);
            d.appendChild(dd);
        });
    }

    function renderOverview(o) {
        var d = o.domains || {}, q = o.queue || {}, jobs = q.jobs || {};
        var tb;

        dl('sum-domains', [
            ['active', d.active || 0, 'state-active'],
            ['pending', d.pending || 0, d.pending ? 'state-pending' : ''],
            ['error', d.error || 0, d.error ? 'state-error' : '']
        ]);
        dl('sum-expiring', [
            ['within 7 days', o.expiring['7'], o.expiring['7'] ? 'late' : ''],
            ['within 14 days', o.expiring['14'], o.expiring['14'] ? 'soon' : ''],
            ['within 30 days', o.expiring['30']],
            ['expired', o.expired, o.expired ? 'late' : '']
        ]);
        dl('sum-queue', [
            ['queued', jobs.queued || 0],
            ['failed, retrying', jobs.failed || 0, jobs.failed ? 'state-error' : ''],
            ['due now', q.due]
        ]);
        dl('sum-feed', [
            ['head seq', o.feed_seq],
            ['hosts', o.hosts.length],
            ['hosts behind', o.hosts.filter(function (h) {
                return h.lag_changes > 0;
            }).length]
        ]);

        tb = $('hosts').tBodies[0];
        clear(tb);
        o.hosts.forEach(function (h) {
            row(tb, [h.host, h.pool, { text: h.state, cls: 'state-' + h.state },
                     { text: h.seq, cls: 'num' },
                     { text: h.lag_changes, cls: 'num' + (h.lag_changes ? ' soon' : '') },
                     { text: h.lag_seconds ? duration(h.lag_seconds) : 'up to date',
                       cls: 'num' },
                     time(h.reported) + ' (' + duration(Math.max(0, o.now - h.reported))
                     + ' ago)']);
        });
        if (!o.hosts.length) {
            empty(tb, 7, 'No host has reported yet.');
        }
        $('leases').textContent = o.leases.length
            ? 'Restart leases held: ' + o.leases.map(function (l) {
                return l.pool + ' ' + l.held;
            }).join(', ')
            : 'No restart lease held.';

        $('acme-off').hidden = o.acme;
        tb = $('cas').tBodies[0];
        clear(tb);
        o.cas.forEach(function (c) {
            row(tb, [{ text: c.order, cls: 'num' }, c.name,
                     { text: c.state, cls: 'state-' + c.state },
                     { text: c.failures, cls: 'num' }, time(c.last_ok),
                     c.next_retry > o.now ? time(c.next_retry) : '',
                     c.last_error || '']);
        });
        if (!o.cas.length) {
            empty(tb, 7, 'No CA configured.');
        }
        tb = $('budgets').tBodies[0];
        clear(tb);
        o.budgets.forEach(function (b) {
            row(tb, [b.scope, b.ca || 'all', b.account || '',
                     { text: b.remaining < 0 ? 'unlimited' : b.remaining,
                       cls: 'num' + (b.remaining === 0 ? ' late' : '') },
                     { text: b.limit, cls: 'num' }, duration(b.window),
                     b.paused_until ? time(b.paused_until) : '']);
        });
        if (!o.budgets.length) {
            empty(tb, 7, 'No order budget.');
        }
        tb = $('orders').tBodies[0];
        clear(tb);
        o.orders.forEach(function (r) {
            row(tb, [r.ca, { text: r.result, cls: r.result === 'valid'
                             ? 'state-up' : 'state-error' },
                     { text: r.count, cls: 'num' }]);
        });
        if (!o.orders.length) {
            empty(tb, 3, 'No order yet.');
        }
        $('updated').textContent = 'As of ' + time(o.now) + '.';
    }

    function query(after) {
        var q = ['limit=' + PAGE];
        if (filter.state) {
            q.push('state=' + encodeURIComponent(filter.state));
        }
        if (filter.q) {
            q.push('q=' + encodeURIComponent(filter.q));
        }
        if (filter.expiring) {
            q.push('expiring=' + encodeURIComponent(filter.expiring));
        }
        if (after) {
            q.push('after=' + encodeURIComponent(after));
        }
        return 'domains?' + q.join('&');
    }

    function renderDomains(list, append) {
        var tb = $('domains').tBodies[0];
        var now = Date.now() / 1000;

        if (!append) {
            clear(tb);
        }
        list.forEach(function (d) {
            var left = d.not_after ? Math.floor((d.not_after - now) / 86400) : null;
            var tr = row(tb, [d.domain, { text: d.state, cls: 'state-' + d.state },
                              { text: short(d.serial), cls: 'mono', title: d.serial || '' },
                              { text: day(d.not_after), cls: 'nowrap',
                                title: d.not_after ? time(d.not_after) : '' },
                              { text: left === null ? '' : left,
                                cls: 'num' + (left !== null && left < 7 ? ' late'
                                              : left !== null && left < 14 ? ' soon' : '') },
                              { text: d.last_error || '', cls: 'why' }], 'domain');
            tr.dataset.domain = d.domain;
        });
        if (!tb.rows.length) {
            empty(tb, 6, 'No domain matches.');
        }
        $('domains-count').textContent = tb.querySelectorAll('tr.domain').length
            + ' shown' + (next ? ', more below' : '');
        $('more').hidden = !next;
    }

    function loadDomains(append) {
        var mine = ++loadSerial;
        return api(query(append ? next : null)).then(function (r) {
            if (mine !== loadSerial) {
                return;         /* a newer filter won */
            }
            next = r.domains.length === PAGE ? r.next : null;
            renderDomains(r.domains, append);
            document.body.dataset.domainsLoaded = String(mine);
        });
    }

    function showDetail(name) {
        api('domains/' + encodeURIComponent(name)).then(function (d) {
            var tb = $('detail-hosts').tBodies[0];
            clear(tb);
            $('detail-name').textContent = d.domain;
            (d.hosts || []).forEach(function (h) {
                row(tb, [h.host, h.pool, { text: h.serial ? short(h.serial) : 'none',
                         title: h.serial || '',
                         cls: 'mono' + (h.serial === d.serial ? '' : ' soon') },
                         { text: h.seq, cls: 'num' }, h.state,
                         h.failed || '']);
            });
            if (!(d.hosts || []).length) {
                empty(tb, 6, 'No host has reported yet.');
            }
            $('detail').hidden = false;
        }).catch(showError);
    }

    function refresh() {
        showError(null);
        return Promise.all([api('overview').then(renderOverview),
                            loadDomains(false)]).catch(showError);
    }

    document.addEventListener('DOMContentLoaded', function () {
        var timer = null;

        $('filters').addEventListener('submit', function (e) {
            e.preventDefault();
        });
        $('state-filter').addEventListener('click', function (e) {
            var b = e.target.closest('button');
            if (!b) {
                return;
            }
            Array.prototype.forEach.call(this.querySelectorAll('button'),
                                         function (x) {
                x.classList.toggle('on', x === b);
            });
            filter.state = b.dataset.state;
            loadDomains(false).catch(showError);
        });
        $('q').addEventListener('input', function () {
            var v = this.value.trim().toLowerCase();
            clearTimeout(timer);
            timer = setTimeout(function () {
                filter.q = v;
                loadDomains(false).catch(showError);
            }, 250);
        });
        $('expiring').addEventListener('change', function () {
            filter.expiring = this.value;
            loadDomains(false).catch(showError);
        });
        $('more').addEventListener('click', function () {
            loadDomains(true).catch(showError);
        });
        $('refresh').addEventListener('click', refresh);
        $('domains').tBodies[0].addEventListener('click', function (e) {
            var tr = e.target.closest('tr.domain');
            if (tr) {
                showDetail(tr.dataset.domain);
            }
        });
        refresh();
    });
}());
