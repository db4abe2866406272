// Runs the exporters on the real SDKs in a fresh process (so the GPU environment of the test applies) and prints
// what they exported as JSON.
const http = require('node:http');
const mode = process.argv[2];

async function otel() {
  const {
    MeterProvider,
    PeriodicExportingMetricReader,
    InMemoryMetricExporter,
    AggregationTemporality,
  } = require('@opentelemetry/sdk-metrics');
  const { registerTaskmeterMetrics } = require('../../dist/exporters/otel.js');
  const tm = require('../../dist/index.js');
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const provider = new MeterProvider({ readers: [reader] });
  const errors = [];
  process.on('uncaughtException', (e) => errors.push(String(e)));
  const metrics = registerTaskmeterMetrics(provider.getMeter('taskmeter-test'), { gpuIntervalMs: 20 });
  await new Promise((r) => setTimeout(r, 200));
  const { usage } = await tm.measure(() => new Promise((r) => setTimeout(r, 100)));
  metrics.recordUsage(usage, { task: 'sleep' });
  await reader.forceFlush();
  const out = [];
  for (const rm of exporter.getMetrics()) {
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        out.push({
          name: m.descriptor.name,
          unit: m.descriptor.unit,
          type: m.descriptor.type,
          dataPointType: m.dataPointType,
          isMonotonic: m.isMonotonic,
          points: m.dataPoints.map((p) => ({ attributes: p.attributes, value: p.value })),
        });
      }
    }
  }
  metrics.unregister();
  await provider.shutdown();
  return { metrics: out, errors, hasGpu: tm.hasGpu };
}

async function prometheus() {
  const prom = require('prom-client');
  const { createTaskmeterCollector } = require('../../dist/exporters/prometheus.js');
  const tm = require('../../dist/index.js');
  const registry = new prom.Registry();
  prom.collectDefaultMetrics({ register: registry });
  const collector = createTaskmeterCollector({ registry, gpuIntervalMs: 20 });
  await new Promise((r) => setTimeout(r, 200));
  const { usage } = await tm.measure(() => new Promise((r) => setTimeout(r, 50)));
  collector.observeUsage(usage, { task: 'sleep' });
  const server = http.createServer(async (_req, res) => {
    res.setHeader('content-type', registry.contentType);
    res.end(await registry.metrics());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  const resp = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await resp.text();
  server.close();
  collector.unregister();
  const after = await registry.metrics();
  return {
    status: resp.status,
    contentType: resp.headers.get('content-type'),
    text,
    afterHasTaskmeter: after.includes('taskmeter_'),
    hasGpu: tm.hasGpu,
  };
}

(mode === 'otel' ? otel() : prometheus()).then(
  (r) => {
    console.log(JSON.stringify(r));
  },
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
