// Shared by the peer clients: the benchmark message, argument parsing, the closed loop and the
// one-line JSON report. Every peer sends the same 1 KiB text message the C++ benchmarks send.

export const FROM_NAME = 'Sales Rep';
export const FROM_ADDRESS = 'rep@sender.example';
export const FROM = `"${FROM_NAME}" <${FROM_ADDRESS}>`;
export const TO = 'prospect@example.net';
export const SUBJECT = 'Quick question';
export const TEXT = ('x'.repeat(63) + '\n').repeat(16); // 1024 bytes

// The raw MIME form of the message, for the APIs that take one (SES Raw, Mailgun messages.mime).
// Built by hand with fixed Date and Message-ID so the stored request bodies are reproducible.
export const MIME = Buffer.from(
    [
        `From: ${FROM}`,
        `To: ${TO}`,
        `Subject: ${SUBJECT}`,
        'Date: Sat, 28 Nov 2026 00:00:00 +0000',
        'Message-ID: <20261128000000.1.bench@sender.example>',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=us-ascii',
        'Content-Transfer-Encoding: 7bit',
        '',
        TEXT.replace(/\n/g, '\r\n'),
    ].join('\r\n'),
    'latin1'
);

// Parses `--name value` pairs and bare `--name` flags. `spec` maps each name to 'int' or
// 'string' (required) or 'flag' (optional, false unless given).
export function parseArgs(argv, spec, usage) {
    const out = {};
    for (const [name, kind] of Object.entries(spec)) if (kind === 'flag') out[name] = false;
    for (let i = 0; i < argv.length; i++) {
        const key = argv[i];
        const name = key.startsWith('--') ? key.slice(2) : undefined;
        if (!name || !(name in spec)) fail(`unknown argument '${key}'`, usage);
        if (spec[name] === 'flag') {
            out[name] = true;
            continue;
        }
        const value = argv[++i];
        if (value === undefined) fail(`--${name} wants a value`, usage);
        if (spec[name] === 'int') {
            const n = Number(value);
            if (!Number.isInteger(n) || n < 1) fail(`--${name} wants a positive integer, got '${value}'`, usage);
            out[name] = n;
        } else {
            out[name] = value;
        }
    }
    for (const name of Object.keys(spec)) if (!(name in out)) fail(`--${name} is required`, usage);
    return out;
}

function fail(message, usage) {
    process.stderr.write(`${message}\nusage: ${usage}\n`);
    process.exit(2);
}

// Runs `total` calls of `sendOne` keeping `inflight` of them outstanding: each completion starts
// the next call, so the client is never idle and never queues more than `inflight`.
export function closedLoop(total, inflight, sendOne) {
    let started = 0;
    let finished = 0;
    let ok = 0;
    let failed = 0;
    const errors = [];
    return new Promise((resolve) => {
        if (total === 0) return resolve({ ok, failed, errors });
        const launch = () => {
            if (started >= total) return;
            started++;
            let p;
            try {
                p = Promise.resolve(sendOne());
            } catch (e) {
                p = Promise.reject(e);
            }
            p.then(
                () => {
                    ok++;
                },
                (e) => {
                    failed++;
                    if (errors.length < 5) errors.push(e);
                }
            ).finally(() => {
                if (++finished === total) resolve({ ok, failed, errors });
                else launch();
            });
        };
        for (let i = 0; i < Math.min(inflight, total); i++) launch();
    });
}

export function warmupCount(messages) {
    return Math.min(200, Math.floor(messages / 10));
}

// Warm-up (not measured), then the measured run. Wall time from hrtime, client CPU (user +
// system, all threads of this process) from process.cpuUsage(), both over the measured part only.
export async function measure(messages, inflight, sendOne) {
    const warm = await closedLoop(warmupCount(messages), inflight, sendOne);
    if (warm.failed > 0) reportErrors('warm-up', warm);
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const run = await closedLoop(messages, inflight, sendOne);
    const t1 = process.hrtime.bigint();
    const cpu = process.cpuUsage(cpu0);
    if (run.failed > 0) reportErrors('measured run', run);
    const seconds = Number(t1 - t0) / 1e9;
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    if (warm.failed > 0) process.exitCode = 1;
    return {
        ok: run.ok,
        failed: run.failed,
        seconds: round(seconds, 6),
        cpu_seconds: round(cpuSeconds, 6),
        msgs_per_s: run.ok > 0 ? round(run.ok / seconds, 1) : 0,
        cpu_us_per_msg: run.ok > 0 ? round((cpuSeconds * 1e6) / run.ok, 2) : 0,
    };
}

function reportErrors(phase, result) {
    process.stderr.write(`${result.failed} send(s) failed in the ${phase}; first errors:\n`);
    for (const e of result.errors) {
        const status = e?.statusCode ?? e?.status ?? e?.$metadata?.httpStatusCode ?? e?.code ?? e?.responseCode;
        process.stderr.write(`  ${status !== undefined ? `[${status}] ` : ''}${e?.message ?? e}\n`);
    }
}

function round(x, digits) {
    const f = 10 ** digits;
    return Math.round(x * f) / f;
}

// Prints the single JSON line the runners parse. The exit status is non-zero when any send,
// warm-up included, failed.
export function report(fields, result) {
    process.stdout.write(JSON.stringify({ ...fields, ...result }) + '\n');
    if (result.failed > 0 || result.ok === 0) process.exitCode = 1;
}
