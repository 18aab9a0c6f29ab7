/**
 * The scale bench's SVG line-chart writer (bench/src/scale/svg-chart.ts): its output is committed
 * (bench/charts/) and rendered by GitHub, so it must be well-formed XML whatever the data, with
 * round ticks covering the data, and it must refuse values it cannot place instead of drawing NaN.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ChartDataError, formatTick, niceTicks, renderLineChart } from '../../bench/src/scale/svg-chart.js';

interface Element {
  readonly name: string;
  readonly attributes: Record<string, string>;
  readonly children: Element[];
  text: string;
}

/** A strict little XML reader (elements, quoted attributes, text, entities): throws on anything malformed. */
function parseXml(xml: string): Element {
  const root: Element = { name: '#document', attributes: {}, children: [], text: '' };
  const stack: Element[] = [root];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let at = 0;
  while (at < xml.length) {
    const lt = xml.indexOf('<', at);
    const text = xml.slice(at, lt === -1 ? xml.length : lt);
    if (/&(?!(lt|gt|amp|quot|apos);)/.test(text)) throw new Error(`bad entity in text at ${at}`);
    stack[stack.length - 1]!.text += text;
    if (lt === -1) break;
    tag.lastIndex = lt;
    const match = tag.exec(xml);
    if (match === null) throw new Error(`malformed tag at ${lt}: ${xml.slice(lt, lt + 60)}`);
    const [whole, closing, name, attrs, selfClosing] = match;
    if (closing === '/') {
      const open = stack.pop();
      if (open?.name !== name) throw new Error(`</${name}> closes <${open?.name ?? 'nothing'}>`);
    } else {
      const attributes: Record<string, string> = {};
      for (const [, key, value] of (attrs ?? '').matchAll(/([\w:-]+)="([^"]*)"/g)) {
        if (key! in attributes) throw new Error(`duplicate attribute ${key}`);
        attributes[key!] = value!;
      }
      const element: Element = { name: name!, attributes, children: [], text: '' };
      stack[stack.length - 1]!.children.push(element);
      if (selfClosing !== '/') stack.push(element);
    }
    at = lt + whole.length;
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1]?.name}>`);
  if (root.children.length !== 1 || root.text.trim() !== '') throw new Error('not exactly one root element');
  return root.children[0]!;
}

function all(element: Element, name: string): Element[] {
  return [...(element.name === name ? [element] : []), ...element.children.flatMap((c) => all(c, name))];
}

const texts = (svg: Element): string[] => all(svg, 'text').map((t) => t.text);

test('a chart with several series is one well-formed <svg> with a polyline and a legend entry per series', () => {
  const svg = parseXml(
    renderLineChart({
      title: 'Drain rate <by> backlog & "queues"',
      xLabel: 'backlog rows',
      yLabel: 'msgs/s',
      xScale: 'log',
      series: [
        {
          name: 'txoutbox',
          points: [
            [20_000, 25_000],
            [1_000_000, 24_000],
          ],
        },
        {
          name: 'raw SQL',
          points: [
            [20_000, 47_000],
            [1_000_000, 45_000],
          ],
        },
      ],
    }),
  );
  assert.equal(svg.name, 'svg');
  assert.equal(svg.attributes.xmlns, 'http://www.w3.org/2000/svg');
  assert.equal(all(svg, 'polyline').length, 2);
  const labels = texts(svg);
  assert.ok(labels.includes('Drain rate &lt;by&gt; backlog &amp; &quot;queues&quot;'), 'the title, escaped');
  assert.ok(labels.includes('txoutbox') && labels.includes('raw SQL'), 'a legend entry per series');
  assert.ok(labels.includes('backlog rows (log scale)'));
  for (const tick of ['10k', '100k', '1M']) assert.ok(labels.includes(tick), `log x tick ${tick}`);
  for (const tick of ['0', '10k', '20k', '30k', '40k', '50k']) assert.ok(labels.includes(tick), `y tick ${tick}`);
  for (const polyline of all(svg, 'polyline')) assert.doesNotMatch(polyline.attributes.points ?? '', /NaN|Infinity/);
});

test('ticks are round numbers whose range covers the data', () => {
  assert.deepEqual(niceTicks(0, 97), [0, 20, 40, 60, 80, 100]);
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(3, 3), [3]);
  const ticks = niceTicks(12.3, 4567.8);
  assert.ok(ticks[0]! <= 12.3 && ticks[ticks.length - 1]! >= 4567.8);
  assert.deepEqual(
    [1234, 25_000, 2_500_000, 0.25, 0].map((v) => formatTick(v)),
    ['1234', '25k', '2.5M', '0.25', '0'],
  );
});

test('an empty series, no series at all, and a one-point series still give a drawable chart', () => {
  for (const series of [[], [{ name: 'nothing yet', points: [] }], [{ name: 'one', points: [[5, 7]] as const }]]) {
    const svg = parseXml(renderLineChart({ title: 't', xLabel: 'x', yLabel: 'y', series }));
    assert.doesNotMatch(JSON.stringify(svg), /NaN|Infinity/);
    assert.equal(all(svg, 'polyline').length, 0, 'no line through fewer than two points');
  }
  const one = parseXml(renderLineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 'one', points: [[5, 7]] }] }));
  assert.equal(all(one, 'circle').length, 1, 'the one point is drawn as a marker');
  const logOne = parseXml(
    renderLineChart({ title: 't', xLabel: 'x', yLabel: 'y', xScale: 'log', series: [{ name: 'one', points: [[1, 3]] }] }),
  );
  assert.ok(texts(logOne).includes('1'));
});

test('NaN, Infinity and x ≤ 0 on a log axis are refused with a ChartDataError naming the series and the point', () => {
  const chart =
    (points: [number, number][], xScale: 'linear' | 'log' = 'linear') =>
    () =>
      renderLineChart({ title: 't', xLabel: 'x', yLabel: 'y', xScale, series: [{ name: 'p99', points }] });
  assert.throws(
    chart([
      [0, 1],
      [1, Number.NaN],
    ]),
    (error: unknown) =>
      error instanceof ChartDataError &&
      error.series === 'p99' &&
      error.index === 1 &&
      Number.isNaN(error.value) &&
      /chart series "p99", point 1: values must be finite numbers/.test(error.message),
  );
  assert.throws(chart([[Number.POSITIVE_INFINITY, 1]]), ChartDataError);
  assert.throws(chart([[0, 1]], 'log'), /x must be > 0 on a log axis \(got 0\)/);
});
