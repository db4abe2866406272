// 100 concurrent async windows, some nested, with known delays and CPU bursts.
const tm = require('../../dist/index.js');
const { native } = require('../../dist/binding.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function burn(ms) {
  const s = process.cpuUsage();
  for (;;) {
    const d = process.cpuUsage(s);
    if (d.user + d.system >= ms * 1000) return;
  }
}
async function main() {
  const results = await Promise.all(
    Array.from({ length: 100 }, async (_, i) => {
      const delay = 20 + (i % 10) * 15;
      const { result, usage } = await tm.measure(
        async () => {
          await sleep(delay / 2);
          let inner = null;
          if (i % 3 === 0)
            inner = (
              await tm.measure(
                async () => {
                  burn(2);
                  await sleep(delay / 4);
                  return i;
                },
                { sampleIntervalMs: 2 },
              )
            ).usage;
          await sleep(delay / 4);
          return { inner };
        },
        { sampleIntervalMs: 1 + (i % 5) },
      );
      return { i, delay, usage, inner: result.inner };
    }),
  );
  console.log(JSON.stringify({ results, openWindows: native.samplerState().openWindows }));
}
main();
