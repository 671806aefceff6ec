// The status page: polls /api/rollouts (and the selected rollout) every second and
// redraws. Read-only: it only GETs. Every name and message from a policy is put on
// the page with textContent, never parsed as HTML.
'use strict';

(function () {
  const POLL_MS = 1000;
  const charts = window.ShiftgateCharts;

  function cell(row, text, className) {
    const td = document.createElement('td');
    td.textContent = text === undefined || text === null ? '' : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function fact(body, label, value, className) {
    const row = document.createElement('tr');
    const th = document.createElement('th');
    th.textContent = label;
    row.appendChild(th);
    cell(row, value, className);
    body.appendChild(row);
  }

  function selectedFromHash() {
    const match = /^#\/([^/]+)\/([^/]+)$/.exec(window.location.hash);
    if (!match) return null;
    try {
      return { namespace: decodeURIComponent(match[1]), name: decodeURIComponent(match[2]) };
    } catch (_) {
      return null;
    }
  }

  function link(namespace, name) {
    return '#/' + encodeURIComponent(namespace) + '/' + encodeURIComponent(name);
  }

  async function getJson(path) {
    const response = await fetch(path, { cache: 'no-store' });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  function renderList(rows) {
    const body = document.querySelector('#rollouts tbody');
    body.replaceChildren();
    for (const rollout of rows) {
      const row = document.createElement('tr');
      const name = document.createElement('td');
      const anchor = document.createElement('a');
      anchor.href = link(rollout.namespace, rollout.name);
      anchor.textContent = `${rollout.namespace}/${rollout.name}`;
      name.appendChild(anchor);
      row.appendChild(name);
      cell(row, rollout.revision);
      cell(row, rollout.phase, 'phase-' + rollout.phase);
      cell(row, `${rollout.canaryWeight}%`);
      cell(row, rollout.currentStep);
      cell(row, rollout.lastVerdict || '–', rollout.lastVerdict ? 'verdict-' + rollout.lastVerdict : '');
      cell(row, rollout.message);
      body.appendChild(row);
    }
    document.getElementById('empty').hidden = rows.length > 0;
  }

  function seconds(origin, at) {
    return `+${((Date.parse(at) - origin) / 1000).toFixed(1)}s`;
  }

  function renderCharts(detail) {
    const container = document.getElementById('charts');
    container.replaceChildren();
    const samples = detail.samples;
    if (samples.length === 0) return;
    const t0 = Date.parse(samples[0].at);
    const t1 = Math.max(Date.parse(samples[samples.length - 1].at), Date.parse(detail.updatedAt));
    const weightDots = samples
      .filter((s) => s.verdict)
      .map((s) => ({ t: Date.parse(s.at), v: s.canaryWeight, cls: 'dot-' + s.verdict, label: s.verdict }));
    container.appendChild(charts.chart({
      title: `Canary weight: ${detail.canaryWeight}% (dots: each evaluation's verdict)`,
      legend: [{ cls: 'weight', label: 'canary weight %' }],
      series: [{
        cls: 'weight', stepped: true, extendTo: t1,
        points: samples.map((s) => [Date.parse(s.at), s.canaryWeight]),
      }],
      dots: weightDots, yMin: 0, yMax: 100, unit: '%', t0, t1,
    }));
    for (const limit of detail.limits) {
      const points = (key) => samples
        .map((s) => [Date.parse(s.at), (s.metrics || []).find((m) => m.name === limit.name)])
        .filter(([, m]) => m && Number.isFinite(m[key]))
        .map(([t, m]) => [t, m[key]]);
      const canary = points('canary');
      const stable = points('stable');
      const upper = points('upper');
      const lower = points('lower');
      const last = samples.map((s) => (s.metrics || []).find((m) => m.name === limit.name)).filter(Boolean).pop();
      const parts = [];
      if (last && Number.isFinite(last.canary)) parts.push(`canary ${charts.format(last.canary)}`);
      if (last && Number.isFinite(last.stable)) parts.push(`stable ${charts.format(last.stable)}`);
      if (last && Number.isFinite(last.upper)) parts.push(`limit ≤ ${charts.format(last.upper)}`);
      if (last && Number.isFinite(last.lower)) parts.push(`limit ≥ ${charts.format(last.lower)}`);
      if (last && Number.isFinite(last.evidence)) parts.push(`evidence ${Math.round(last.evidence * 100)}% of what rolls back`);
      if (last) parts.push(last.verdict);
      const evidence = points('evidence');
      if (canary.length === 0 && evidence.length > 0) {
        // A sequential comparison judges counts, not a value: its evidence is the line,
        // and 100% of what rolls back is the limit.
        container.appendChild(charts.chart({
          title: `${limit.name}: ${parts.join(', ')}`,
          legend: [{ cls: 'canary', label: 'evidence, % of what rolls back' }, { cls: 'limit', label: 'limit' }],
          series: [
            { cls: 'limit', points: [[t0, 100], [t1, 100]] },
            { cls: 'canary', points: evidence.map(([t, v]) => [t, Math.min(v, 10) * 100]) },
          ],
          yMin: 0, unit: '%', t0, t1,
        }));
        continue;
      }
      const legend = [{ cls: 'canary', label: 'canary' }];
      if (stable.length) legend.push({ cls: 'stable', label: 'stable' });
      if (upper.length || lower.length) legend.push({ cls: 'limit', label: 'limit' });
      container.appendChild(charts.chart({
        title: `${limit.name}: ${parts.join(', ') || 'not measured yet'}`,
        legend,
        series: [
          { cls: 'stable', points: stable },
          { cls: 'limit', points: upper, stepped: true, extendTo: t1 },
          { cls: 'limit', points: lower, stepped: true, extendTo: t1 },
          { cls: 'canary', points: canary },
        ],
        dots: samples
          .map((s) => [s, (s.metrics || []).find((m) => m.name === limit.name)])
          .filter(([, m]) => m && Number.isFinite(m.canary))
          .map(([s, m]) => ({ t: Date.parse(s.at), v: m.canary, cls: 'dot-' + m.verdict, label: m.verdict })),
        t0, t1,
      }));
    }
  }

  function renderDetail(detail) {
    const status = detail.status;
    document.getElementById('title').textContent =
      `${detail.namespace}/${detail.name}` + (detail.revision ? ` · revision ${detail.revision}` : '');
    const facts = document.querySelector('#facts tbody');
    facts.replaceChildren();
    fact(facts, 'Phase', detail.phase, 'phase-' + detail.phase);
    fact(facts, 'Canary weight', `${detail.canaryWeight}%` + (status.target ? ` (moving to ${status.target.canaryWeight}%)` : ''));
    fact(facts, 'Step', detail.currentStep || '–');
    fact(facts, 'Last verdict', detail.lastVerdict || '–', detail.lastVerdict ? 'verdict-' + detail.lastVerdict : '');
    fact(facts, 'Reason', detail.reason || '–');
    fact(facts, 'Message', detail.message || '–');
    renderCharts(detail);

    const analysis = status.lastAnalysis;
    document.getElementById('analysis-message').textContent = analysis
      ? `${analysis.verdict}: ${analysis.message}`
      : 'No evaluation yet.';
    const metrics = document.querySelector('#analysis tbody');
    metrics.replaceChildren();
    for (const metric of (analysis && analysis.metrics) || []) {
      const row = document.createElement('tr');
      cell(row, metric.name);
      cell(row, Number.isFinite(metric.canary) ? charts.format(metric.canary) : '–');
      cell(row, Number.isFinite(metric.stable) ? charts.format(metric.stable) : '–');
      cell(row, metric.verdict, 'verdict-' + metric.verdict);
      cell(row, metric.message);
      metrics.appendChild(row);
    }

    const origin = Date.parse(status.startedAt || (status.history[0] || {}).at || detail.updatedAt);
    const history = document.querySelector('#history tbody');
    history.replaceChildren();
    for (const entry of status.history || []) {
      const row = document.createElement('tr');
      cell(row, seconds(origin, entry.at));
      cell(row, entry.phase, 'phase-' + entry.phase);
      cell(row, entry.step + 1);
      cell(row, `${entry.canaryWeight}%`);
      cell(row, entry.reason);
      cell(row, entry.message);
      history.appendChild(row);
    }
    document.getElementById('detail').hidden = false;
  }

  function setConnection(text, lost) {
    const connection = document.getElementById('connection');
    connection.textContent = text;
    connection.className = lost ? 'lost' : '';
  }

  async function poll() {
    try {
      const list = await getJson('/api/rollouts');
      renderList(list.rollouts);
      // One rollout (run, demo): shown at once. Several: the one the address names.
      let target = selectedFromHash();
      if (!target && list.rollouts.length === 1) target = list.rollouts[0];
      if (target) {
        renderDetail(await getJson(
          `/api/rollouts/${encodeURIComponent(target.namespace)}/${encodeURIComponent(target.name)}`));
      } else {
        document.getElementById('detail').hidden = true;
      }
      setConnection(`updated ${new Date().toLocaleTimeString()}, every ${POLL_MS / 1000}s`, false);
    } catch (error) {
      setConnection(`cannot reach shiftgate (${error.message}); the run may have ended: showing the last state`, true);
    } finally {
      window.setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
