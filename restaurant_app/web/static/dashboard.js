// The sales dashboard: reads /api/dashboard/* every few seconds and draws what it gets, for the
// whole chain or the store picked (?store=, kept in the page's address).
// Words in the page's language (its texts come with the page); money, numbers and dates the
// Brazilian way in either language (R$ 1.234,56, dd/mm/aaaa, 24 h), on the restaurant's clock.
(() => {
  'use strict';

  const LANG = document.documentElement.lang;
  const TEXTS = JSON.parse(document.getElementById('texts').textContent);
  const REFRESH_MS = 5000;
  const UNDER_WAY_MS = 1000;  // the minute under way: figures at most a second or two old
  const REQUEST_TIMEOUT_MS = 10000;
  // Each panel's endpoint, its drawing, and whether it is a store's (the pipeline's health is not).
  const PANELS = [
    ['/api/dashboard/summary', renderSummary, true],
    ['/api/dashboard/minutes?hours=2', renderMinutes, true],
    ['/api/dashboard/dishes?limit=8', renderDishes, true],
    [`/api/dashboard/insights?limit=6&lang=${LANG}`, renderInsights, true],
    ['/api/dashboard/health', renderHealth, false],
  ];
  const BADGE_TONES = { dish_trending_up: 'up', dish_trending_down: 'down', anomalous_minute: 'alert' };
  const COLORS = { revenue: '#1f6feb', revenueSoft: '#b9d3fb', orders: '#e8890c', dishes: '#2f9e72', grid: '#edf0f5' };

  const money = new Intl.NumberFormat('pt-BR', { style: 'currency', currency: 'BRL' });
  const roundMoney = new Intl.NumberFormat('pt-BR', { style: 'currency', currency: 'BRL', maximumFractionDigits: 0 });
  const whole = new Intl.NumberFormat('pt-BR');
  const decimal = new Intl.NumberFormat('pt-BR', { maximumFractionDigits: 1 });
  const change = new Intl.NumberFormat('pt-BR', { style: 'percent', maximumFractionDigits: 1, signDisplay: 'exceptZero' });

  let zone = 'America/Sao_Paulo';  // the server's RESTAURANT_TIMEZONE, from /api/dashboard/summary
  let provisional = [];            // per minute of the time-series chart: still under way?
  let lastUpdate = null;
  let store = new URLSearchParams(window.location.search).get('store') || '';  // '': the whole chain
  const charts = {};
  const $ = (id) => document.getElementById(id);

  // The text under ``key`` in the page's language, its {placeholders} filled from ``values``.
  function t(key, values = {}) {
    const text = TEXTS[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
  }

  const named = (prefix, name) => (TEXTS[`${prefix}.${name}`] ?? name);

  function clock(moment, withSeconds = false) {
    const options = { timeZone: zone, hour: '2-digit', minute: '2-digit' };
    if (withSeconds) options.second = '2-digit';
    return new Intl.DateTimeFormat('pt-BR', { ...options, hourCycle: 'h23' }).format(new Date(moment));
  }

  // dd/mm/aaaa HH:MM on the restaurant's clock, as everywhere on the page.
  function dayAndClock(moment) {
    const day = new Intl.DateTimeFormat('pt-BR', { timeZone: zone, dateStyle: 'short' }).format(new Date(moment));
    return `${day} ${clock(moment)}`;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ``path`` for the store picked; the chain's figures need no parameter.
  function forStore(path) {
    if (!store) return path;
    return `${path}${path.includes('?') ? '&' : '?'}store=${encodeURIComponent(store)}`;
  }

  async function getJson(path) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    try {
      const response = await fetch(path, { signal: controller.signal, cache: 'no-store' });
      return { status: response.status, body: await response.json() };
    } finally {
      clearTimeout(timer);
    }
  }

  // --- Today so far -------------------------------------------------------------------------

  function renderSummary(body) {
    zone = body.timezone;
    $('zone').textContent = zone;
    $('today-date').textContent = new Intl.DateTimeFormat('pt-BR', { timeZone: zone, dateStyle: 'short' })
      .format(new Date(body.today.ends));
    const { today, yesterday } = body;
    $('compared-at').textContent = clock(yesterday.ends);
    renderKpi('kpi-revenue', money.format(today.revenue), today.revenue, yesterday.revenue, money.format(yesterday.revenue));
    renderKpi('kpi-gross', money.format(today.gross_sales), today.gross_sales, yesterday.gross_sales,
      money.format(yesterday.gross_sales));
    renderKpi('kpi-net', money.format(today.net_revenue), today.net_revenue, yesterday.net_revenue,
      money.format(yesterday.net_revenue));
    renderKpi('kpi-orders', whole.format(today.orders), today.orders, yesterday.orders, whole.format(yesterday.orders));
    renderKpi('kpi-items', whole.format(today.items), today.items, yesterday.items, whole.format(yesterday.items));
    renderKpi('kpi-ticket', money.format(today.avg_ticket), today.avg_ticket, yesterday.avg_ticket,
      money.format(yesterday.avg_ticket));
    renderKpi('kpi-customers', whole.format(today.unique_customers), today.unique_customers,
      yesterday.unique_customers, whole.format(yesterday.unique_customers));
    renderBreakdown('by-channel', body.by_channel, today.revenue);
    renderBreakdown('by-payment', body.by_payment, today.revenue);
    renderBreakdown('by-store', body.by_store, today.revenue);
  }

  function renderKpi(id, shown, now, before, beforeShown) {
    const card = $(id);
    card.querySelector('.value').textContent = shown;
    const compare = card.querySelector('.compare');
    compare.replaceChildren();
    const ratio = Number(before) > 0 ? (Number(now) - Number(before)) / Number(before) : null;
    if (ratio !== null) {
      const direction = ratio > 0 ? 'up' : ratio < 0 ? 'down' : '';
      const arrow = ratio > 0 ? '▲ ' : ratio < 0 ? '▼ ' : '';
      compare.append(element('span', direction, arrow + change.format(ratio)), ' ');
    }
    compare.append(t('js.vs', { value: beforeShown }));
  }

  function renderBreakdown(id, rows, total, empty = t('js.no_sales')) {
    const list = $(id);
    list.replaceChildren();
    if (!rows.length) {
      list.append(element('li', 'empty', empty));
      return;
    }
    for (const row of rows) {
      const item = element('li');
      item.dataset.name = row.name;
      const bar = element('span', 'bar');
      const fill = element('i');
      fill.style.width = `${(100 * Number(row.revenue)) / Number(total)}%`;
      bar.append(fill);
      item.append(element('span', 'name', named('name', row.name)), bar,
        element('span', 'amount', money.format(row.revenue)));
      if (row.orders !== undefined) item.title = t('js.orders_count', { count: whole.format(row.orders) });
      list.append(item);
    }
  }

  // --- Per minute -----------------------------------------------------------------------------

  function renderMinutes(body) {
    provisional = body.minutes.map((m) => m.provisional);
    const labels = body.minutes.map((m) => clock(m.minute));
    const revenue = body.minutes.map((m) => Number(m.revenue));
    const orders = body.minutes.map((m) => m.orders);
    if (!charts.minutes) charts.minutes = new Chart($('minutes-chart'), minutesChart());
    const chart = charts.minutes;
    chart.data.labels = labels;
    chart.data.datasets[0].data = revenue;
    chart.data.datasets[1].data = orders;
    chart.update();
  }

  // The minute under way between full refreshes: its provisional figures from the stored orders.
  function renderMinuteUnderWay(body) {
    const chart = charts.minutes;
    const last = provisional.length - 1;
    if (!chart || last < 0 || !provisional[last] || chart.data.labels[last] !== clock(body.period_start)) return;
    chart.data.datasets[0].data[last] = Number(body.gross_revenue);
    chart.data.datasets[1].data[last] = body.orders;
    chart.update('none');
  }

  async function refreshMinuteUnderWay() {
    const asked = store;
    try {
      const { status, body } = await getJson(forStore('/api/dashboard/minute'));
      if (status === 200 && asked === store) renderMinuteUnderWay(body);
    } catch (error) {
      // The full refresh shows an outage; this one only waits for the next second.
    }
  }

  function minutesChart() {
    const underWay = (index) => provisional[index] === true;
    return {
      data: {
        labels: [],
        datasets: [
          {
            type: 'bar', label: t('js.revenue'), yAxisID: 'revenue', data: [], order: 2,
            backgroundColor: (ctx) => (underWay(ctx.dataIndex) ? COLORS.revenueSoft : COLORS.revenue),
            borderColor: COLORS.revenue,
            borderWidth: (ctx) => (underWay(ctx.dataIndex) ? 1.5 : 0),
            borderDash: [3, 2],
          },
          {
            type: 'line', label: t('js.orders'), yAxisID: 'orders', data: [], order: 1,
            borderColor: COLORS.orders, backgroundColor: COLORS.orders, borderWidth: 2,
            pointRadius: 0, pointHoverRadius: 3,
            segment: { borderDash: (ctx) => (underWay(ctx.p1DataIndex) ? [4, 4] : undefined) },
          },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: { grid: { display: false }, ticks: { autoSkip: true, maxTicksLimit: 13, maxRotation: 0 } },
          revenue: {
            position: 'left', beginAtZero: true, grid: { color: COLORS.grid },
            ticks: { callback: (value) => roundMoney.format(value) },
          },
          orders: {
            position: 'right', beginAtZero: true, grid: { drawOnChartArea: false },
            ticks: { precision: 0 }, title: { display: true, text: t('js.orders_axis') },
          },
        },
        plugins: {
          legend: {
            position: 'top', align: 'start',
            labels: { boxWidth: 12, boxHeight: 10, sort: (a, b) => a.datasetIndex - b.datasetIndex },
          },
          tooltip: {
            callbacks: {
              title: (items) => items[0].label + (underWay(items[0].dataIndex) ? t('js.provisional') : ''),
              label: (item) => (item.dataset.yAxisID === 'revenue'
                ? t('js.revenue_tip', { value: money.format(item.raw) })
                : t('js.orders_tip', { value: whole.format(item.raw) })),
            },
          },
        },
      },
    };
  }

  // --- Dishes ---------------------------------------------------------------------------------

  function renderDishes(body) {
    renderDishWindow('hour', body.hour, (start) => t('js.this_hour', { time: clock(start) }));
    renderDishWindow('day', body.day, () => t('js.today'));
  }

  function renderDishWindow(granularity, window, describe) {
    const dishes = window ? window.dishes : [];
    const chart = charts[granularity] || (charts[granularity] = new Chart($(`dishes-${granularity}-chart`), dishesChart()));
    chart.data.labels = dishes.map((d) => d.dish);
    chart.data.datasets[0].data = dishes.map((d) => d.quantity);
    chart.$revenue = dishes.map((d) => d.revenue);
    chart.canvas.parentElement.hidden = !dishes.length;
    chart.update();
    const source = $(`dishes-${granularity}-source`);
    source.replaceChildren();
    if (window && window.computed_at) {
      source.append(t('js.report_of', { what: describe(window.period_start), time: clock(window.computed_at, true) }),
        '(', element('code', '', 'report_dishes'), ').');
    } else {
      source.append(element('span', 'empty', t('js.no_report', { what: describe(window ? window.period_start : Date.now()) })),
        t('js.runs_every_minute'));
    }
  }

  const NARROW_CHART = 420;

  /** A name cut in two lines at the space nearest its middle; a short name stays whole. */
  function twoLines(name) {
    const spaces = [...name.matchAll(/ /g)].map((m) => m.index);
    if (name.length <= 12 || !spaces.length) return name;
    const cut = spaces.reduce((a, b) => (Math.abs(b - name.length / 2) < Math.abs(a - name.length / 2) ? b : a));
    return [name.slice(0, cut), name.slice(cut + 1)];
  }

  function dishesChart() {
    return {
      type: 'bar',
      data: { labels: [], datasets: [{ label: t('js.sold'), data: [], backgroundColor: COLORS.dishes, borderRadius: 3, maxBarThickness: 16 }] },
      options: {
        indexAxis: 'y',
        animation: false,
        maintainAspectRatio: false,
        scales: {
          x: { beginAtZero: true, grid: { color: COLORS.grid }, ticks: { precision: 0 } },
          y: {
            grid: { display: false },
            ticks: {
              autoSkip: false,
              // On a phone a long dish name takes two lines, leaving the bars room to be read.
              callback(value) {
                const name = this.getLabelForValue(value);
                return this.chart.width < NARROW_CHART ? twoLines(name) : name;
              },
            },
          },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (item) => t('js.sold_tip', {
                count: whole.format(item.raw), value: money.format(item.chart.$revenue[item.dataIndex]),
              }),
            },
          },
        },
      },
    };
  }

  // --- Insights -------------------------------------------------------------------------------

  function renderInsights(body) {
    const list = $('insights');
    list.replaceChildren();
    if (!body.insights.length) {
      list.append(element('li', 'empty', t('js.no_insights')));
      return;
    }
    for (const insight of body.insights) {
      const item = element('li');
      item.dataset.kind = insight.kind;
      item.append(element('span', `badge ${BADGE_TONES[insight.kind] || ''}`, named('badge', insight.kind)),
        element('span', 'message', insight.message));
      list.append(item);
    }
  }

  // --- History --------------------------------------------------------------------------------

  const HISTORY_FIGURES = {
    revenue: (v) => money.format(v), orders: (v) => whole.format(v), items: (v) => whole.format(v),
    avg_ticket: (v) => money.format(v), unique_customers: (v) => whole.format(v),
  };
  const dayShown = (iso) => iso.split('-').reverse().join('/');  // 2026-12-01 -> 01/12/2026

  function historyQuery(extra = {}) {
    const params = new URLSearchParams({ period: $('history-period').value, lang: LANG, ...extra });
    if (store) params.set('store', store);
    if ($('history-date').value) params.set('date', $('history-date').value);
    return params.toString();
  }

  let historyAsked = 0;  // the latest request: an answer to an earlier one arrives too late to show

  async function loadHistory() {
    $('history-csv').href = `/api/dashboard/history.csv?${historyQuery({ numbers: $('history-numbers').value })}`;
    const asked = ++historyAsked;
    let result;
    try {
      result = await getJson(`/api/dashboard/history?${historyQuery()}`);
    } catch {
      result = { status: 0 };
    }
    if (asked !== historyAsked) return;
    if (result.status !== 200) {
      const why = result.status === 503 ? t('js.unavailable') : t('js.server_silent');
      $('history-span').textContent = t('js.history_failed', { error: why });
      return;
    }
    renderHistory(result.body);
  }

  function compared(now, before, shown) {
    const cell = [shown];
    const ratio = Number(before) > 0 ? (Number(now) - Number(before)) / Number(before) : null;
    if (ratio !== null) {
      const direction = ratio > 0 ? 'up' : ratio < 0 ? 'down' : '';
      cell.push(' ', element('span', `change ${direction}`, change.format(ratio)));
    }
    return cell;
  }

  function renderHistory(body) {
    const { current, previous } = body;
    const weekday = body.same_weekday_last_week;
    if (!$('history-date').value) $('history-date').value = current.first_day;
    $('history-span').textContent = current.first_day === current.last_day ? dayShown(current.first_day)
      : t('js.history_span', { first: dayShown(current.first_day), last: dayShown(current.last_day) });
    if (!current.days_with_sales) $('history-span').append(' · ', element('span', 'empty', t('js.no_history')));
    $('history-table').classList.toggle('no-weekday', !weekday);
    for (const [figure, format] of Object.entries(HISTORY_FIGURES)) {
      const cells = $('history-table').querySelectorAll(`tr[data-figure="${figure}"] td`);
      cells[0].replaceChildren(format(current[figure]));
      cells[1].replaceChildren(...compared(current[figure], previous[figure], format(previous[figure])));
      cells[1].title = t('js.history_span', { first: dayShown(previous.first_day), last: dayShown(previous.last_day) });
      cells[2].replaceChildren(weekday ? format(weekday[figure]) : '');
      if (weekday) cells[2].title = dayShown(weekday.first_day);
    }
    const dishes = $('history-dishes');
    dishes.replaceChildren(...current.dishes.map((d) => {
      const item = element('li', '', `${d.dish} · `);
      item.dataset.name = d.dish;
      item.append(element('span', 'amount', t('js.sold_count', { count: whole.format(d.quantity) })),
        ' · ', money.format(d.revenue));
      return item;
    }));
    renderBreakdown('history-payments', current.by_payment, current.revenue, t('js.no_history'));
  }

  // --- Pipeline health ------------------------------------------------------------------------

  function status(ok, text, detail) {
    const nodes = [element('span', `dot ${ok ? 'ok' : 'bad'}`), text];
    if (detail) nodes.push(' ', element('span', 'detail', detail));
    return nodes;
  }

  function renderHealth(body) {
    const { kafka, database, pipeline } = body;
    renderDown(body.down || []);
    const brokers = kafka.ok ? t('js.brokers', { count: kafka.brokers }) : '';
    $('health-kafka').replaceChildren(...status(kafka.ok, t(kafka.ok ? 'js.reachable' : 'js.unreachable'), brokers));
    $('health-database').replaceChildren(...status(database.ok, t(database.ok ? 'js.reachable' : 'js.unavailable')));
    renderLag(body.consumer_lag);
    if (!pipeline) {
      for (const id of ['health-ingest', 'health-run']) $(id).textContent = '–';
      $('rejections-button').textContent = '–';
      return;
    }
    $('health-ingest').replaceChildren(t('js.ingest', { count: whole.format(pipeline.orders_last_minute) }),
      element('span', 'detail', t('js.ingest_rate', { rate: decimal.format(pipeline.orders_last_5_minutes / 5) })));
    const rejected = pipeline.rejections_last_hour;
    $('rejections-button').textContent = rejected ? t('js.see_why', { count: whole.format(rejected) }) : t('js.none');
    renderRun(pipeline.last_run);
    renderSkipped(pipeline.skipped_windows);
  }

  // The parts /health names as down: the page says which, in the reader's words.
  function renderDown(down) {
    const cell = $('health-down');
    cell.hidden = down.length === 0;
    cell.textContent = down.length === 0 ? '' : t('js.parts_down', {
      parts: down.map((part) => named('part', part)).join(', '),
    });
  }

  function renderSkipped(skipped) {
    const cell = $('health-skipped');
    cell.hidden = skipped.count === 0;
    cell.textContent = skipped.count === 0 ? '' : t('js.skipped_windows', {
      count: whole.format(skipped.count), oldest: dayAndClock(skipped.oldest),
    });
  }

  function renderLag(lag) {
    const cell = $('health-lag');
    if (lag.total === null) {
      cell.replaceChildren(element('span', 'detail', t('js.lag_unknown') + (lag.note ? t('js.not_started') : t('js.yet'))));
      return;
    }
    const parts = lag.partitions.map((p) => t('js.partition_lag', {
      partition: p.partition, lag: p.lag === null ? '?' : whole.format(p.lag),
    }));
    cell.replaceChildren(t('js.messages', { count: whole.format(lag.total) }),
      element('span', 'detail', t('js.partitions', { count: lag.partitions.length })));
    cell.title = parts.join('\n');
  }

  function renderRun(run) {
    const cell = $('health-run');
    if (!run) {
      cell.replaceChildren(element('span', 'detail', t('js.no_run')));
      return;
    }
    const ok = run.status === 'succeeded';
    const detail = ok
      ? t('js.run_detail', {
        duration: decimal.format(run.duration_seconds), ready: decimal.format(run.ready_after_minute_seconds),
      })
      : run.error || '';
    const said = t('js.run_at', { status: named('js.status', run.status), time: clock(run.finished_at, true) });
    cell.replaceChildren(...status(ok, said, detail));
    if (run.another_running) cell.append(element('span', 'detail', t('js.run_in_progress')));
  }

  async function showRejections() {
    const dialog = $('rejections-dialog');
    const list = $('rejections-list');
    list.replaceChildren();
    $('rejections-summary').textContent = t('js.loading');
    if (!dialog.open) dialog.showModal();
    let result;
    try {
      result = await getJson('/api/dashboard/rejections?hours=1&limit=50');
    } catch {
      result = { status: 0 };
    }
    if (result.status !== 200) {
      const why = result.status === 503 ? t('js.database_down', { frozen: '', retrying: '' }).trim()
        : t('js.server_silent');
      $('rejections-summary').textContent = t('js.cannot_list', { error: why });
      return;
    }
    const { total, rejections } = result.body;
    $('rejections-summary').textContent = total === 0
      ? t('js.no_rejections')
      : t('js.rejections_summary', { total: whole.format(total), count: whole.format(rejections.length) });
    for (const r of rejections) {
      const item = element('li');
      item.append(element('span', 'reason', r.reason), ' ',
        element('span', 'detail', t('js.rejection_where', {
          time: clock(r.rejected_at, true), partition: r.partition, offset: r.offset,
        })));
      list.append(item);
    }
  }

  // --- Refreshing and outages ------------------------------------------------------------------

  function showBanner(message, warning = false) {
    const banner = $('banner');
    banner.textContent = message;
    banner.hidden = !message;
    banner.classList.toggle('warning', warning);
  }

  function renderOutage({ unreachable, databaseDown, kafkaDown }) {
    const frozen = lastUpdate ? t('js.as_of', { time: clock(lastUpdate, true) }) : '';
    const retrying = t('js.retrying', { seconds: REFRESH_MS / 1000 });
    if (unreachable) {
      showBanner(t('js.server_down', { frozen, retrying }));
    } else if (databaseDown) {
      showBanner(t('js.database_down', { frozen, retrying }));
    } else if (kafkaDown) {
      showBanner(t('js.kafka_down'), true);
    } else {
      showBanner('');
    }
    document.body.classList.toggle('stale', unreachable || databaseDown);
  }

  // --- The store picker: the whole chain, or one of the known stores ------------------------

  async function loadStores() {
    let result;
    try {
      result = await getJson('/api/dashboard/stores');
    } catch {
      return;
    }
    if (result.status !== 200) return;
    const picker = $('store');
    for (const id of result.body.stores) picker.append(new Option(id, id));
    if (!result.body.stores.includes(store)) store = '';
    picker.value = store;
    keepStoreInAddress();
  }

  // The page's address and the other language's link name the store picked.
  function keepStoreInAddress() {
    const address = new URL(window.location.href);
    const other = new URLSearchParams({ lang: $('other-language').hreflang });
    if (store) {
      address.searchParams.set('store', store);
      other.set('store', store);
    } else {
      address.searchParams.delete('store');
    }
    window.history.replaceState(null, '', address);
    $('other-language').href = `?${other}`;
  }

  function pickStore() {
    store = $('store').value;
    keepStoreInAddress();
    refresh();
    loadHistory();
  }

  async function refresh() {
    const asked = store;
    const results = await Promise.allSettled(PANELS.map(([path, , ofStore]) => getJson(ofStore ? forStore(path) : path)));
    if (asked !== store) return;  // another store was picked meanwhile: its own refresh draws it
    const outage = { unreachable: false, databaseDown: false, kafkaDown: false };
    results.forEach((result, index) => {
      const render = PANELS[index][1];
      if (result.status === 'rejected') {
        outage.unreachable = true;
        return;
      }
      const { status: code, body } = result.value;
      if (code === 503) outage.databaseDown = true;
      if (code === 200 || (code === 503 && render === renderHealth)) render(body);
      if (render === renderHealth && body.kafka) outage.kafkaDown = !body.kafka.ok;
    });
    if (!outage.unreachable && !outage.databaseDown) {
      lastUpdate = new Date();
      $('updated').textContent = t('js.updated', { time: clock(lastUpdate, true) });
    }
    renderOutage(outage);
  }

  function loop() {
    refresh()
      .catch((error) => console.error('The dashboard could not refresh:', error))
      .finally(() => setTimeout(loop, REFRESH_MS));
  }

  function tick() {
    $('clock').textContent = clock(Date.now(), true);
  }

  function start() {
    if (typeof Chart === 'undefined') {
      showBanner(t('js.no_charts'));
      return;
    }
    Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    Chart.defaults.color = '#6b7385';
    $('rejections-button').addEventListener('click', showRejections);
    $('rejections-close').addEventListener('click', () => $('rejections-dialog').close());
    for (const id of ['history-date', 'history-period', 'history-numbers']) {
      $(id).addEventListener('change', loadHistory);
    }
    $('store').addEventListener('change', pickStore);
    loadStores().finally(() => {
      loadHistory();
      tick();
      setInterval(tick, 1000);
      setInterval(refreshMinuteUnderWay, UNDER_WAY_MS);
      loop();
    });
  }

  start();
})();
