// Inline SVG line charts for the status page, drawn with DOM calls only (no HTML
// parsing, no library): every label is set with textContent.
'use strict';

window.ShiftgateCharts = (function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const WIDTH = 720;
  const HEIGHT = 170;
  const LEFT = 56;
  const RIGHT = 12;
  const TOP = 10;
  const BOTTOM = 24;

  function node(tag, attributes, text) {
    const element = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      element.setAttribute(name, String(value));
    }
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function format(value) {
    if (!Number.isFinite(value)) return '';
    // Four significant digits, written as JavaScript writes numbers (0.001, 1e-7).
    return String(Number(value.toPrecision(4)));
  }

  // spec: { title, legend: [{cls, label}], series: [{cls, points: [[t, v]], stepped}],
  //         dots: [{t, v, cls}], yMin, yMax, unit, t0, t1 }; t in ms since the epoch.
  function chart(spec) {
    const figure = document.createElement('figure');
    figure.className = 'chart';
    const title = document.createElement('h4');
    title.textContent = spec.title;
    figure.appendChild(title);

    const values = [];
    for (const series of spec.series) for (const [, v] of series.points) values.push(v);
    for (const dot of spec.dots || []) values.push(dot.v);
    let yMin = spec.yMin !== undefined ? spec.yMin : Math.min(0, ...values);
    let yMax = spec.yMax !== undefined ? spec.yMax : Math.max(...values, yMin + 1e-9);
    if (spec.yMax === undefined) yMax = yMax + (yMax - yMin) * 0.1;
    if (!(yMax > yMin)) yMax = yMin + 1;
    const t0 = spec.t0;
    const t1 = spec.t1 > spec.t0 ? spec.t1 : spec.t0 + 1000;
    const x = (t) => LEFT + ((t - t0) / (t1 - t0)) * (WIDTH - LEFT - RIGHT);
    const y = (v) => TOP + (1 - (v - yMin) / (yMax - yMin)) * (HEIGHT - TOP - BOTTOM);

    const svg = node('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img' });
    svg.appendChild(node('title', {}, spec.title));
    for (const fraction of [0.25, 0.5, 0.75]) {
      const gy = TOP + fraction * (HEIGHT - TOP - BOTTOM);
      svg.appendChild(node('line', { class: 'grid', x1: LEFT, x2: WIDTH - RIGHT, y1: gy, y2: gy }));
    }
    svg.appendChild(node('line', { class: 'axis', x1: LEFT, x2: LEFT, y1: TOP, y2: HEIGHT - BOTTOM }));
    svg.appendChild(node('line', { class: 'axis', x1: LEFT, x2: WIDTH - RIGHT, y1: HEIGHT - BOTTOM, y2: HEIGHT - BOTTOM }));
    const unit = spec.unit || '';
    svg.appendChild(node('text', { x: LEFT - 4, y: TOP + 9, 'text-anchor': 'end' }, format(yMax) + unit));
    svg.appendChild(node('text', { x: LEFT - 4, y: HEIGHT - BOTTOM, 'text-anchor': 'end' }, format(yMin) + unit));
    svg.appendChild(node('text', { x: LEFT, y: HEIGHT - 6 }, '0s'));
    svg.appendChild(node('text', { x: WIDTH - RIGHT, y: HEIGHT - 6, 'text-anchor': 'end' },
      `${Math.round((t1 - t0) / 100) / 10}s`));

    for (const series of spec.series) {
      if (series.points.length === 0) continue;
      const coordinates = [];
      let previous = null;
      for (const [t, v] of series.points) {
        if (series.stepped && previous !== null) coordinates.push(`${x(t)},${y(previous)}`);
        coordinates.push(`${x(t)},${y(v)}`);
        previous = v;
      }
      if (series.extendTo !== undefined && previous !== null) coordinates.push(`${x(series.extendTo)},${y(previous)}`);
      if (coordinates.length === 1) coordinates.push(coordinates[0].replace(/^[^,]+/, String(x(t1))));
      svg.appendChild(node('polyline', { class: series.cls, points: coordinates.join(' ') }));
    }
    for (const dot of spec.dots || []) {
      const circle = node('circle', { class: dot.cls, cx: x(dot.t), cy: y(dot.v), r: 3.5 });
      circle.appendChild(node('title', {}, dot.label || ''));
      svg.appendChild(circle);
    }
    figure.appendChild(svg);

    const legend = document.createElement('figcaption');
    legend.className = 'legend';
    spec.legend.forEach((item, index) => {
      if (index > 0) legend.appendChild(document.createTextNode(' · '));
      const swatch = document.createElement('span');
      swatch.className = 'swatch-' + item.cls;
      swatch.textContent = '■ ';
      legend.appendChild(swatch);
      legend.appendChild(document.createTextNode(item.label));
    });
    figure.appendChild(legend);
    return figure;
  }

  return { chart, format };
})();
