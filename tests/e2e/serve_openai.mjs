// Drives a running `twin serve` with the official OpenAI Node client, as an application would:
// models, chat (plain, streamed, the client's stream helper), text completions, embeddings
// (base64, the client's default, and float), errors mapped to the client's classes, and eight
// streams at once. Prints "ok NAME: ..." or "FAIL NAME: ..." per check; exits 1 on a failure.
// Plain ES2022 and Node 18 APIs only. Run by tests/e2e/serve_openai.sh.
// usage: node serve_openai.mjs BASE_URL API_KEY OPENAI_PACKAGE_DIR EMBEDDER_DIR
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [baseURL, apiKey, pkgDir, embedderDir] = process.argv.slice(2);
if (!embedderDir) {
    console.error('usage: node serve_openai.mjs BASE_URL API_KEY OPENAI_PACKAGE_DIR EMBEDDER_DIR');
    process.exit(2);
}

// The client's ES module entry, as its package.json "exports" names it for import.
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
function entry(exp) {
    if (typeof exp === 'string') return exp;
    if (!exp) return null;
    return entry(exp.import) || entry(exp.default);
}
const main = entry(pkg.exports && pkg.exports['.']) || pkg.module || pkg.main;
const mod = await import(pathToFileURL(join(pkgDir, main)).href);
const OpenAI = mod.default;

// Every exchange, recorded by a fetch that tees the response: the request body the client
// built, the status, and the raw text the server sent (the SSE framing included).
const exchanges = [];
function recordingFetch(url, init) {
    const ex = { url: String(url), body: init && init.body ? String(init.body) : '' };
    exchanges.push(ex);
    return fetch(url, init).then((res) => {
        ex.status = res.status;
        ex.text = res.clone().text().catch((e) => `(unreadable: ${e})`);
        return res;
    });
}
const opts = { baseURL, maxRetries: 0, timeout: 30000, fetch: recordingFetch };
const client = new OpenAI({ apiKey, ...opts });

let failures = 0;
function assert(cond, what) {
    if (!cond) throw new Error(what);
}
async function check(name, fn) {
    try {
        const detail = await fn();
        console.log(`ok ${name}: ${detail === undefined ? '' : detail}`);
    } catch (e) {
        failures++;
        console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    }
}
// expectError(promise, class, status): the request fails with that error class and status.
async function expectError(promise, cls, status) {
    try {
        await promise;
    } catch (e) {
        assert(e instanceof cls, `wanted ${cls.name}, got ${e && e.constructor.name}: ${e}`);
        assert(e.status === status, `status ${e.status}, wanted ${status}`);
        return e;
    }
    throw new Error(`wanted ${cls.name}, but the request succeeded`);
}
const show = (s) => JSON.stringify(s);

const messages = [
    { role: 'system', content: 'You are a terse historian of the United States.' },
    { role: 'user', content: 'What did Monroe say about European colonies?' },
];
const chatReq = { model: 'llama', messages, max_tokens: 16, temperature: 0 };

// collect(stream): the concatenated deltas of choice 0, its chunks, and the usage chunk.
async function collect(stream) {
    let content = '';
    let role = null;
    let last = null;
    let usage = null;
    const ids = new Set();
    for await (const chunk of stream) {
        ids.add(chunk.id);
        assert(chunk.object === 'chat.completion.chunk', `object ${show(chunk.object)}`);
        if (chunk.usage) usage = chunk.usage;
        if (chunk.choices.length === 0) continue;
        const c = chunk.choices[0];
        assert(c.index === 0, `choice index ${c.index}`);
        if (c.delta.role) role = role || c.delta.role;
        if (typeof c.delta.content === 'string') content += c.delta.content;
        last = c;
    }
    return { content, role, last, usage, ids };
}

await check('models-list', async () => {
    const ids = [];
    for await (const m of client.models.list()) {
        assert(m.object === 'model', `object ${show(m.object)}`);
        ids.push(m.id);
    }
    assert(ids.includes('llama') && ids.includes('bert_embed'), `ids ${show(ids)}`);
    return ids.join(',');
});

let chat = null;
await check('chat', async () => {
    const r = await client.chat.completions.create(chatReq);
    assert(r.object === 'chat.completion' && r.model === 'llama',
        `object/model ${r.object} ${r.model}`);
    assert(typeof r.id === 'string' && r.id.length > 0, `id ${show(r.id)}`);
    assert(r.choices.length === 1, `${r.choices.length} choices`);
    const c = r.choices[0];
    assert(c.index === 0 && c.message.role === 'assistant', `choice ${show(c)}`);
    assert(typeof c.message.content === 'string' && c.message.content.length > 0,
        `content ${show(c.message.content)}`);
    assert(c.finish_reason === 'length', `finish_reason ${show(c.finish_reason)}`);
    assert(r.usage.completion_tokens === 16, `completion_tokens ${r.usage.completion_tokens}`);
    assert(r.usage.prompt_tokens > 0, `prompt_tokens ${r.usage.prompt_tokens}`);
    assert(r.usage.total_tokens === r.usage.prompt_tokens + 16,
        `total_tokens ${r.usage.total_tokens}`);
    chat = r;
    return `${show(c.message.content)}, ${r.usage.prompt_tokens} prompt tokens`;
});
const content = chat ? chat.choices[0].message.content : null;

await check('chat-deterministic', async () => {
    assert(content !== null, 'no first answer');
    const r = await client.chat.completions.create(chatReq);
    assert(r.choices[0].message.content === content,
        `${show(r.choices[0].message.content)} != ${show(content)}`);
    assert(r.id !== chat.id, `the same id twice: ${r.id}`);
});

await check('chat-stream', async () => {
    assert(content !== null, 'no non-streamed answer');
    const stream = await client.chat.completions.create({
        ...chatReq, stream: true, stream_options: { include_usage: true },
    });
    const s = await collect(stream);
    assert(s.content === content, `deltas ${show(s.content)} != ${show(content)}`);
    assert(s.role === 'assistant', `role ${show(s.role)}`);
    assert(s.last && s.last.finish_reason === 'length', `last choice ${show(s.last)}`);
    assert(s.usage && s.usage.completion_tokens === 16, `usage ${show(s.usage)}`);
    assert(s.usage.prompt_tokens === chat.usage.prompt_tokens, `usage ${show(s.usage)}`);
    assert(s.ids.size === 1, `chunk ids ${show([...s.ids])}`);
    const raw = await exchanges[exchanges.length - 1].text;
    assert(raw.trimEnd().endsWith('data: [DONE]'), `the stream ends ${show(raw.slice(-80))}`);
    return `${s.content.length} characters, ended with [DONE]`;
});

await check('chat-stream-helper', async () => {
    // The client's own accumulator: it rebuilds the message from the chunks.
    assert(content !== null, 'no non-streamed answer');
    const runner = client.chat.completions.stream({
        ...chatReq, stream_options: { include_usage: true },
    });
    const final = await runner.finalChatCompletion();
    const c = final.choices[0];
    assert(c.message.content === content, `${show(c.message.content)} != ${show(content)}`);
    assert(c.message.role === 'assistant' && c.finish_reason === 'length', `choice ${show(c)}`);
    assert(final.usage && final.usage.completion_tokens === 16, `usage ${show(final.usage)}`);
});

let text = null;
await check('completion', async () => {
    const r = await client.completions.create({
        model: 'llama', prompt: 'The state of the Union', max_tokens: 8, temperature: 0,
    });
    assert(r.object === 'text_completion' && r.choices.length === 1, `response ${show(r)}`);
    const c = r.choices[0];
    assert(typeof c.text === 'string' && c.text.length > 0, `text ${show(c.text)}`);
    assert(c.finish_reason === 'length', `finish_reason ${show(c.finish_reason)}`);
    assert(r.usage.completion_tokens === 8 && r.usage.prompt_tokens > 0, `usage ${show(r.usage)}`);
    text = c.text;
    return show(c.text);
});

await check('completion-stream', async () => {
    assert(text !== null, 'no non-streamed text');
    const stream = await client.completions.create({
        model: 'llama', prompt: 'The state of the Union', max_tokens: 8, temperature: 0,
        stream: true,
    });
    let got = '';
    let finish = null;
    for await (const chunk of stream) {
        if (chunk.choices.length === 0) continue;
        got += chunk.choices[0].text;
        if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
    }
    assert(got === text, `${show(got)} != ${show(text)}`);
    assert(finish === 'length', `finish_reason ${show(finish)}`);
});

// The embedder's facts from its folder: the dimension, and whether it ends with Normalize.
const config = JSON.parse(readFileSync(join(embedderDir, 'config.json'), 'utf8'));
const dim = config.hidden_size;
let normalizes = false;
try {
    const modules = JSON.parse(readFileSync(join(embedderDir, 'modules.json'), 'utf8'));
    normalizes = modules.some((m) => /\.Normalize$/.test(m.type));
} catch (e) {
    normalizes = false;
}
const inputs = ['a', 'b c'];
let vectors = null;
await check('embeddings-base64', async () => {
    const r = await client.embeddings.create({ model: 'bert_embed', input: inputs });
    const ex = exchanges[exchanges.length - 1];
    assert(JSON.parse(ex.body).encoding_format === 'base64', `request ${ex.body}`);
    const raw = JSON.parse(await ex.text);
    assert(typeof raw.data[0].embedding === 'string', 'the server did not send base64');
    assert(r.object === 'list' && r.model === 'bert_embed', `object/model ${r.object} ${r.model}`);
    assert(r.data.length === 2, `${r.data.length} embeddings`);
    r.data.forEach((d, i) => {
        assert(d.object === 'embedding' && d.index === i, `item ${i}: ${d.object} ${d.index}`);
        assert(d.embedding.length === dim,
            `item ${i}: length ${d.embedding.length}, wanted ${dim}`);
        assert(d.embedding.every(Number.isFinite), `item ${i}: not finite`);
        const norm = Math.sqrt(d.embedding.reduce((s, x) => s + x * x, 0));
        if (normalizes) assert(Math.abs(norm - 1) < 1e-3, `item ${i}: norm ${norm}`);
    });
    const same = r.data[0].embedding.every((x, k) => x === r.data[1].embedding[k]);
    assert(!same, 'two different inputs gave the same vector');
    assert(r.usage && r.usage.prompt_tokens > 0, `usage ${show(r.usage)}`);
    vectors = r.data.map((d) => d.embedding);
    return `${r.data.length} x ${dim}${normalizes ? ', unit norm' : ''}`;
});

await check('embeddings-float', async () => {
    assert(vectors !== null, 'no base64 embeddings');
    const r = await client.embeddings.create({
        model: 'bert_embed', input: inputs, encoding_format: 'float',
    });
    assert(r.data.length === 2, `${r.data.length} embeddings`);
    let worst = 0;
    r.data.forEach((d, i) => {
        assert(Array.isArray(d.embedding) && d.embedding.length === dim, `item ${i}: length`);
        d.embedding.forEach((x, k) => { worst = Math.max(worst, Math.abs(x - vectors[i][k])); });
    });
    assert(worst <= 1e-6, `float and base64 differ by ${worst}`);
    return `max difference ${worst}`;
});

await check('auth-wrong-key', async () => {
    const bad = new OpenAI({ apiKey: 'nope', ...opts });
    const e = await expectError(bad.models.list(), OpenAI.AuthenticationError, 401);
    assert(e.type === 'authentication_error', `type ${show(e.type)}`);
    await expectError(bad.chat.completions.create(chatReq), OpenAI.AuthenticationError, 401);
    return e.message;
});

await check('unknown-model', async () => {
    const e = await expectError(client.chat.completions.create({ ...chatReq, model: 'nope' }),
        OpenAI.NotFoundError, 404);
    await expectError(client.chat.completions.create({ ...chatReq, model: 'nope', stream: true }),
        OpenAI.NotFoundError, 404);
    return e.message;
});

await check('bad-request', async () => {
    const e = await expectError(client.chat.completions.create({ ...chatReq, temperature: 5 }),
        OpenAI.BadRequestError, 400);
    assert(/temperature/.test(e.message), `message ${show(e.message)}`);
    return e.message;
});

await check('concurrent-streams', async () => {
    // Eight at once over four slots: four wait in the queue; all must end normally. The
    // request whose greedy answer runs to max_tokens (no end of sequence), eight times.
    assert(content !== null, 'no non-streamed answer');
    const results = await Promise.all(Array.from({ length: 8 }, async () => {
        const stream = await client.chat.completions.create({
            ...chatReq, stream: true, stream_options: { include_usage: true },
        });
        return collect(stream);
    }));
    results.forEach((s, i) => {
        assert(s.last && s.last.finish_reason === 'length', `stream ${i}: last ${show(s.last)}`);
        assert(s.usage && s.usage.completion_tokens === 16, `stream ${i}: usage ${show(s.usage)}`);
        assert(s.content.length > 0, `stream ${i}: no content`);
    });
    const ids = new Set(results.map((s) => [...s.ids][0]));
    assert(ids.size === 8, `${ids.size} distinct ids`);
    for (const ex of exchanges.slice(-8)) {
        const raw = await ex.text;
        assert(ex.status === 200 && raw.trimEnd().endsWith('data: [DONE]'),
            `a stream ended ${show(raw.slice(-80))}`);
    }
    const same = results.filter((s) => s.content === content).length;
    return `8 x 16 tokens, ${same} of 8 equal to the answer alone`;
});

console.log(`openai client ${mod.VERSION || pkg.version} on node ${process.version}: ` +
    `${failures} check(s) failed`);
process.exit(failures ? 1 : 0);
