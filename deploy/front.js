// Checks a prediction request before the model's Cog server sees it (see nginx.conf): the body
// must be a JSON object with an "input" object; webhooks and photo URLs, which make the server
// call out to any address (loopback included) and tell an open port from a closed one, are
// dropped or refused unless FRONT_ALLOW_WEBHOOKS / FRONT_ALLOW_URLS are 1.

const ALLOW_WEBHOOKS = process.env.FRONT_ALLOW_WEBHOOKS === "1";
const ALLOW_URLS = process.env.FRONT_ALLOW_URLS === "1";
const EXAMPLE = '{"input": {"image": "data:image/jpeg;base64,..."}}';

function refuse(r, status, message) {
    r.headersOut["Content-Type"] = "application/json";
    r.return(status, JSON.stringify({ status: "failed", error: message }) + "\n");
}

function isObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

async function prediction(r) {
    let body;
    try {
        body = JSON.parse(r.requestText || "");
    } catch (error) {
        return refuse(r, 400, "The request body must be JSON, for example " + EXAMPLE + ".");
    }
    if (!isObject(body) || !isObject(body.input)) {
        return refuse(r, 400, "The request body must hold an \"input\" object, for example " + EXAMPLE + ".");
    }
    // The body goes on as it came unless something is dropped: writing 90 MB of JSON again
    // would cost as much as reading it.
    let forwarded = r.requestText;
    if (!ALLOW_WEBHOOKS && ("webhook" in body || "webhook_events_filter" in body)) {
        delete body.webhook;
        delete body.webhook_events_filter;
        forwarded = JSON.stringify(body);
    }
    const image = body.input.image;
    if (!ALLOW_URLS && typeof image === "string" && !image.startsWith("data:")) {
        return refuse(r, 400, "Send the photo as a data URI (data:image/jpeg;base64,...): this server does not fetch URLs.");
    }
    const reply = await r.subrequest("/_model" + r.uri, { method: r.method, body: forwarded });
    r.headersOut["Content-Type"] = "application/json";
    r.return(reply.status, reply.responseText);
}

export default { prediction };
