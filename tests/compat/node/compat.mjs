// The openai Node SDK against one base URL (the simulator or abgate). Reads
// {baseURL, models: {support, embed, limited}} as JSON on stdin and prints {case: {ok, error?}}.
import OpenAI from "openai";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { baseURL, models } = JSON.parse(input);
const client = new OpenAI({ baseURL, apiKey: "sk-compat", maxRetries: 0, timeout: 20000 });
const ask = [{ role: "user", content: "What is the weather in Paris right now?" }];
const tools = [{ type: "function", function: { name: "get_weather", description: "Current weather for a city",
  parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] } } }];

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const cases = {
  async chat() {
    const r = await client.chat.completions.create({ model: models.support, messages: ask, user: "node-1" });
    check(r.choices[0].message.content && r.choices[0].finish_reason === "stop", "no answer");
    let text = "";
    const stream = await client.chat.completions.create({ model: models.support, messages: ask, user: "node-1",
      stream: true });
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
    check(text === r.choices[0].message.content, `stream ${JSON.stringify(text)} != ${r.choices[0].message.content}`);
  },
  async tools_round_trip() {
    const first = await client.chat.completions.create({ model: models.support, messages: ask, tools, user: "node-t" });
    const call = first.choices[0].message.tool_calls?.[0];
    check(first.choices[0].finish_reason === "tool_calls" && call, "no tool call");
    check(JSON.parse(call.function.arguments).location === "Paris", call.function.arguments);
    const follow = [...ask, first.choices[0].message, { role: "tool", tool_call_id: call.id, content: "21C" }];
    const second = await client.chat.completions.create({ model: models.support, messages: follow, tools,
      user: "node-t" });
    check(second.choices[0].message.content === "According to get_weather: 21C", second.choices[0].message.content);
    // streamed: the SDK's runner-free way, assembling deltas
    const stream = await client.chat.completions.create({ model: models.support, messages: ask, tools,
      user: "node-t", stream: true });
    let args = "";
    for await (const c of stream) for (const t of c.choices[0]?.delta?.tool_calls ?? []) args += t.function?.arguments ?? "";
    check(args === call.function.arguments, `streamed arguments ${args}`);
  },
  async n2() {
    const q = [{ role: "user", content: "Explain compound interest briefly" }];
    const r = await client.chat.completions.create({ model: models.support, messages: q, n: 2, user: "node-n" });
    check(r.choices.length === 2 && r.choices[0].message.content !== r.choices[1].message.content, "choices");
    const got = ["", ""];
    const stream = await client.chat.completions.create({ model: models.support, messages: q, n: 2,
      user: "node-n", stream: true });
    for await (const c of stream) for (const ch of c.choices) got[ch.index] += ch.delta?.content ?? "";
    check(got[0] === r.choices[0].message.content && got[1] === r.choices[1].message.content, "streamed choices");
  },
  async retry_after_and_request_id() {
    const { data, response, request_id } = await client.chat.completions
      .create({ model: models.support, messages: ask }).withResponse();
    check(data._request_id?.startsWith("req_") && request_id === data._request_id, `request id ${data._request_id}`);
    check(response.headers.get("x-ratelimit-limit-requests"), "x-ratelimit-limit-requests");
    try {
      await client.chat.completions.create({ model: models.limited, messages: ask });
      check(false, "no 429");
    } catch (e) {
      check(e instanceof OpenAI.RateLimitError, `${e}`);
      check(e.headers?.get?.("retry-after") === "1", `retry-after ${e.headers?.get?.("retry-after")}`);
      check(e.requestID, "no request id on the error");
    }
  },
  async responses() {
    const r = await client.responses.create({ model: models.support, input: "Where is my order 424242?",
      user: "node-r" });
    check(r.status === "completed" && r.output_text.includes("424242"), r.output_text);
    const again = await client.responses.retrieve(r.id);
    check(again.output_text === r.output_text, "retrieve");
  },
  async responses_stream() {
    const r = await client.responses.create({ model: models.support, input: "Where is my order 424242?",
      user: "node-r" });
    const stream = await client.responses.create({ model: models.support, input: "Where is my order 424242?",
      user: "node-r", stream: true });
    let text = "";
    const types = [];
    for await (const e of stream) {
      types.push(e.type);
      if (e.type === "response.output_text.delta") text += e.delta;
    }
    check(types[0] === "response.created" && types.at(-1) === "response.completed", types.join(","));
    check(text === r.output_text, "streamed text");
  },
  async responses_chain() {
    const first = await client.responses.create({ model: models.support, input: "Where is my order 424242?",
      user: "node-c" });
    const second = await client.responses.create({ model: models.support, input: "When will it arrive?",
      previous_response_id: first.id, user: "node-c" });
    check(second.previous_response_id === first.id, "previous_response_id");
    check(second.usage.input_tokens > first.usage.input_tokens, "context not chained");
  },
  async embeddings() {
    const e = await client.embeddings.create({ model: models.embed, input: ["refund my order", "refund please"] });
    check(e.data.length === 2 && e.data[0].embedding.length === 256, "embedding shape");
  },
  async models_retrieve() {
    const m = await client.models.retrieve(models.support);
    check(m.id === models.support, m.id);
  },
};

const out = {};
for (const [name, fn] of Object.entries(cases)) {
  try {
    await fn();
    out[name] = { ok: true };
  } catch (e) {
    out[name] = { ok: false, error: `${e?.constructor?.name}: ${e?.message}` };
  }
}
process.stdout.write(JSON.stringify(out));
