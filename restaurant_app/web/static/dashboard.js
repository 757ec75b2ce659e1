// The sales dashboard: reads /api/dashboard/* every few seconds and draws what it gets.
// Money in BRL as a Brazilian reader expects it; times on the restaurant's clock.
(() => {
  'use strict';

  const REFRESH_MS = 5000;
  const REQUEST_TIMEOUT_MS = 10000;
  const PANELS = [
    ['/api/dashboard/summary', renderSummary],
    ['/api/dashboard/minutes?hours=2', renderMinutes],
    ['/api/dashboard/dishes?limit=8', renderDishes],
    ['/api/dashboard/insights?limit=6', renderInsights],
    ['/api/dashboard/health', renderHealth],
  ];
  const NAMES = {
    dine_in: 'Dine-in', takeaway: 'Takeaway', delivery: 'Delivery',
    credit_card: 'Credit card', debit_card: 'Debit card', pix: 'Pix', cash: 'Cash', meal_voucher: 'Meal voucher',
  };
  const INSIGHT_BADGES = {
    top_dish: ['Top dish', ''],
    revenue_vs_previous_hour: ['vs previous hour', ''],
    revenue_vs_same_hour_yesterday: ['vs yesterday', ''],
    dish_trending_up: ['Trending up', 'up'],
    dish_trending_down: ['Trending down', 'down'],
    anomalous_minute: ['Unusual minute', 'alert'],
  };
  const COLORS = { revenue: '#1f6feb', revenueSoft: '#b9d3fb', orders: '#e8890c', dishes: '#2f9e72', grid: '#edf0f5' };

  const money = new Intl.NumberFormat('pt-BR', { style: 'currency', currency: 'BRL' });
  const roundMoney = new Intl.NumberFormat('pt-BR', { style: 'currency', currency: 'BRL', maximumFractionDigits: 0 });
  const whole = new Intl.NumberFormat('pt-BR');
  const decimal = new Intl.NumberFormat('pt-BR', { maximumFractionDigits: 1 });
  const change = new Intl.NumberFormat('pt-BR', { style: 'percent', maximumFractionDigits: 1, signDisplay: 'exceptZero' });

  let zone = 'America/Sao_Paulo';  // the server's RESTAURANT_TIMEZONE, from /api/dashboard/summary
  let provisional = [];            // per minute of the time-series chart: still under way?
  let lastUpdate = null;
  const charts = {};
  const $ = (id) => document.getElementById(id);

  function clock(moment, withSeconds = false) {
    const options = { timeZone: zone, hour: '2-digit', minute: '2-digit' };
    if (withSeconds) options.second = '2-digit';
    return new Intl.DateTimeFormat('pt-BR', options).format(new Date(moment));
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
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
    compare.append(`vs ${beforeShown}`);
  }

  function renderBreakdown(id, rows, total) {
    const list = $(id);
    list.replaceChildren();
    if (!rows.length) {
      list.append(element('li', 'empty', 'No sales yet today.'));
      return;
    }
    for (const row of rows) {
      const item = element('li');
      item.dataset.name = row.name;
      const bar = element('span', 'bar');
      const fill = element('i');
      fill.style.width = `${(100 * Number(row.revenue)) / Number(total)}%`;
      bar.append(fill);
      item.append(element('span', 'name', NAMES[row.name] || row.name), bar,
        element('span', 'amount', money.format(row.revenue)));
      item.title = `${whole.format(row.orders)} orders`;
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

  function minutesChart() {
    const underWay = (index) => provisional[index] === true;
    return {
      data: {
        labels: [],
        datasets: [
          {
            type: 'bar', label: 'Revenue', yAxisID: 'revenue', data: [], order: 2,
            backgroundColor: (ctx) => (underWay(ctx.dataIndex) ? COLORS.revenueSoft : COLORS.revenue),
            borderColor: COLORS.revenue,
            borderWidth: (ctx) => (underWay(ctx.dataIndex) ? 1.5 : 0),
            borderDash: [3, 2],
          },
          {
            type: 'line', label: 'Orders', yAxisID: 'orders', data: [], order: 1,
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
            ticks: { precision: 0 }, title: { display: true, text: 'orders' },
          },
        },
        plugins: {
          legend: {
            position: 'top', align: 'start',
            labels: { boxWidth: 12, boxHeight: 10, sort: (a, b) => a.datasetIndex - b.datasetIndex },
          },
          tooltip: {
            callbacks: {
              title: (items) => items[0].label + (underWay(items[0].dataIndex) ? ' · under way, provisional' : ''),
              label: (item) => (item.dataset.yAxisID === 'revenue'
                ? `Revenue: ${money.format(item.raw)}` : `Orders: ${whole.format(item.raw)}`),
            },
          },
        },
      },
    };
  }

  // --- Dishes ---------------------------------------------------------------------------------

  function renderDishes(body) {
    renderDishWindow('hour', body.hour, (start) => `this hour (from ${clock(start)})`);
    renderDishWindow('day', body.day, () => 'today');
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
      source.append(`Spark report of ${describe(window.period_start)}, computed at ${clock(window.computed_at, true)} `,
        '(', element('code', '', 'report_dishes'), ').');
    } else {
      source.append(element('span', 'empty', `No Spark report for ${describe(window ? window.period_start : Date.now())} yet;`),
        ' the job runs every minute.');
    }
  }

  function dishesChart() {
    return {
      type: 'bar',
      data: { labels: [], datasets: [{ label: 'Sold', data: [], backgroundColor: COLORS.dishes, borderRadius: 3, maxBarThickness: 16 }] },
      options: {
        indexAxis: 'y',
        animation: false,
        maintainAspectRatio: false,
        scales: {
          x: { beginAtZero: true, grid: { color: COLORS.grid }, ticks: { precision: 0 } },
          y: { grid: { display: false }, ticks: { autoSkip: false } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (item) => `${whole.format(item.raw)} sold · ${money.format(item.chart.$revenue[item.dataIndex])}`,
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
      list.append(element('li', 'empty', 'No insights yet: they appear once the report job has run.'));
      return;
    }
    for (const insight of body.insights) {
      const [label, tone] = INSIGHT_BADGES[insight.kind] || [insight.kind, ''];
      const item = element('li');
      item.append(element('span', `badge ${tone}`, label), element('span', 'message', insight.message));
      list.append(item);
    }
  }

  // --- Pipeline health ------------------------------------------------------------------------

  function status(ok, text, detail) {
    const nodes = [element('span', `dot ${ok ? 'ok' : 'bad'}`), text];
    if (detail) nodes.push(' ', element('span', 'detail', detail));
    return nodes;
  }

  function renderHealth(body) {
    const { kafka, database, pipeline } = body;
    const brokers = kafka.ok ? `${kafka.brokers} broker${kafka.brokers === 1 ? '' : 's'}` : '';
    $('health-kafka').replaceChildren(...status(kafka.ok, kafka.ok ? 'reachable' : 'unreachable', brokers));
    $('health-database').replaceChildren(...status(database.ok, database.ok ? 'reachable' : 'unavailable'));
    renderLag(body.consumer_lag);
    if (!pipeline) {
      for (const id of ['health-ingest', 'health-run']) $(id).textContent = '–';
      $('rejections-button').textContent = '–';
      return;
    }
    $('health-ingest').replaceChildren(`${whole.format(pipeline.orders_last_minute)} orders in the last minute `,
      element('span', 'detail', `(${decimal.format(pipeline.orders_last_5_minutes / 5)}/min over 5 min)`));
    const rejected = pipeline.rejections_last_hour;
    $('rejections-button').textContent = rejected ? `${whole.format(rejected)} — see why` : 'none';
    renderRun(pipeline.last_run);
  }

  function renderLag(lag) {
    const cell = $('health-lag');
    if (lag.total === null) {
      cell.replaceChildren(element('span', 'detail', `unknown${lag.note ? `: ${lag.note}` : ' yet'}`));
      return;
    }
    const parts = lag.partitions.map((p) => `partition ${p.partition}: ${p.lag === null ? '?' : whole.format(p.lag)}`);
    cell.replaceChildren(`${whole.format(lag.total)} message${lag.total === 1 ? '' : 's'} `,
      element('span', 'detail', `(${lag.partitions.length} partition${lag.partitions.length === 1 ? '' : 's'}, best-effort)`));
    cell.title = parts.join('\n');
  }

  function renderRun(run) {
    const cell = $('health-run');
    if (!run) {
      cell.replaceChildren(element('span', 'detail', 'no run has finished yet'));
      return;
    }
    const ok = run.status === 'succeeded';
    const detail = ok
      ? `ran ${decimal.format(run.duration_seconds)} s; ready ${decimal.format(run.ready_after_minute_seconds)} s`
        + ' after its last full minute closed'
      : run.error || '';
    cell.replaceChildren(...status(ok, `${run.status} at ${clock(run.finished_at, true)}`, detail));
    if (run.another_running) cell.append(element('span', 'detail', ' · a run is in progress'));
  }

  async function showRejections() {
    const dialog = $('rejections-dialog');
    const list = $('rejections-list');
    list.replaceChildren();
    $('rejections-summary').textContent = 'Loading…';
    if (!dialog.open) dialog.showModal();
    let result;
    try {
      result = await getJson('/api/dashboard/rejections?hours=1&limit=50');
    } catch {
      result = { status: 0, body: { error: 'the dashboard server is not answering' } };
    }
    if (result.status !== 200) {
      $('rejections-summary').textContent = `Cannot list them now: ${result.body.error}`;
      return;
    }
    const { total, rejections } = result.body;
    $('rejections-summary').textContent = total === 0
      ? 'No message was rejected in the last hour.'
      : `${whole.format(total)} rejected; the latest ${whole.format(rejections.length)} with their reasons:`;
    for (const r of rejections) {
      const item = element('li');
      item.append(element('span', 'reason', r.reason), ' ',
        element('span', 'detail', `${clock(r.rejected_at, true)} · partition ${r.partition}, offset ${r.offset}`));
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
    const frozen = lastUpdate ? `: the figures below are as of ${clock(lastUpdate, true)}` : '';
    const retrying = `The page tries again every ${REFRESH_MS / 1000} s and recovers by itself.`;
    if (unreachable) {
      showBanner(`The dashboard server is not answering${frozen}. ${retrying}`);
    } else if (databaseDown) {
      showBanner(`PostgreSQL is unavailable${frozen}. ${retrying}`);
    } else if (kafkaDown) {
      showBanner('Kafka is unreachable: no new orders arrive until it is back.', true);
    } else {
      showBanner('');
    }
    document.body.classList.toggle('stale', unreachable || databaseDown);
  }

  async function refresh() {
    const results = await Promise.allSettled(PANELS.map(([path]) => getJson(path)));
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
      $('updated').textContent = `updated ${clock(lastUpdate, true)}`;
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
      showBanner('The chart library is missing: run `make setup` (npm ci) and reload.');
      return;
    }
    Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    Chart.defaults.color = '#6b7385';
    $('rejections-button').addEventListener('click', showRejections);
    $('rejections-close').addEventListener('click', () => $('rejections-dialog').close());
    tick();
    setInterval(tick, 1000);
    loop();
  }

  start();
})();
