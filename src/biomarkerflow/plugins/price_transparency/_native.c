/* The two hot loops of price-transparency flattening, in C (built on first use by
 * `native.py`, called through ctypes):
 *
 *   mrf_events  the structural scan of `scan.py` (brackets and separators outside strings,
 *               at depth <= 2), one byte at a time instead of numpy's many passes;
 *   mrf_items   `in_network` elements straight into column spans, for the common shape.
 *
 * mrf_items handles the shape nearly every publisher writes: known fields with the types
 * the schema gives, provider groups by reference or inline (v1), no bundles. Anything else
 * (an unexpected type, a missing required field, a duplicate key, malformed JSON,
 * bundled codes or covered services) answers BAIL for that element, and the caller
 * decodes it the exact slow way, which decides what it means. So the fast path never has
 * to agree with the schema on a hard case: it only has to recognise the easy ones.
 *
 * Strings are unescaped in place (unescaped text is never longer), so every value is a
 * span (start, length) of the caller's buffer; length -1 is JSON null.
 */
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- structural scan */

typedef struct {
    int64_t in_string;
    int64_t escaped;
    int64_t depth;
    int64_t error_at; /* a closing bracket with nothing open, or -1 */
} ScanState;

/* Events from data[from:] until `cap` are written or the data ends; returns how many,
 * and in *stop the index to continue from. */
int64_t mrf_events(const uint8_t *data, int64_t n, int64_t from, ScanState *st, int64_t *pos,
                   uint8_t *kind, int64_t *depth_after, int64_t cap, int64_t *stop) {
    int64_t count = 0, i = from, depth = st->depth;
    int in_string = (int)st->in_string, escaped = (int)st->escaped;
    for (; i < n && count < cap; i++) {
        uint8_t c = data[i];
        if (in_string) {
            if (escaped) escaped = 0;
            else if (c == '\\') escaped = 1;
            else if (c == '"') in_string = 0;
            continue;
        }
        /* Outside strings too, as the numpy scan counts them (not JSON either way): a quote
         * after an odd run of backslashes opens nothing. */
        if (escaped) {
            escaped = 0;
            if (c == '"') continue;
        } else if (c == '\\') {
            escaped = 1;
            continue;
        }
        switch (c) {
        case '"': in_string = 1; continue;
        case '{': case '[': depth++; break;
        case '}': case ']':
            if (depth == 0) { st->error_at = i; goto done; }
            depth--;
            break;
        case ',': case ':': break;
        default: continue;
        }
        if (depth <= 2) {
            pos[count] = i;
            kind[count] = c;
            depth_after[count] = depth;
            count++;
        }
    }
done:
    st->in_string = in_string;
    st->escaped = escaped;
    st->depth = depth;
    *stop = i;
    return count;
}

/* ---------------------------------------------------------------- columns */

typedef struct { int64_t *start; int32_t *len; int64_t count, cap; } Spans;
typedef struct { int64_t *v; int64_t count, cap; } Ints;

typedef struct {
    /* one row per in_network item */
    Spans arrangement, name, code_type, code_version, code, description, severity;
    Ints item_element, item_rates, item_prices;
    /* one row per negotiated rate: its item row, its references (a list), whether it
     * lists its provider groups inline (v1) */
    Ints rate_item, refs_end, rate_inline;
    Spans refs;
    /* one row per inline provider group: its rate row, its index there, its TIN, its NPIs */
    Ints group_rate, group_index, npis_end;
    Spans tin_type, tin_value, business_name, npis;
    /* one row per negotiated price */
    Ints price_rate, price_rate_index, price_index;
    Spans ntype, amount, expiration, bclass, setting, info;
    Ints services_end, modifiers_end;
    Spans services, modifiers;
} Items;

enum { OK = 0, BAIL = 1, FULL = 2 };
#define MAX_DEPTH 512

typedef struct {
    uint8_t *p, *end, *base;
    int status;
    Items *out;
} Cursor;

static int push_span(Cursor *c, Spans *s, int64_t start, int64_t len) {
    if (s->count >= s->cap) { c->status = FULL; return 0; }
    s->start[s->count] = start;
    s->len[s->count] = (int32_t)len;
    s->count++;
    return 1;
}

static int push_int(Cursor *c, Ints *s, int64_t v) {
    if (s->count >= s->cap) { c->status = FULL; return 0; }
    s->v[s->count++] = v;
    return 1;
}

static inline void ws(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static inline int bail(Cursor *c) {
    if (c->status == OK) c->status = BAIL;
    return 0;
}

static int expect(Cursor *c, uint8_t ch) {
    ws(c);
    if (c->p >= c->end || *c->p != ch) return bail(c);
    c->p++;
    return 1;
}

static int hex4(const uint8_t *p, uint32_t *out) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t h = p[k];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= (uint32_t)(h - '0');
        else if (h >= 'a' && h <= 'f') v |= (uint32_t)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v |= (uint32_t)(h - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* A string at c->p (its opening quote): unescaped in place; its span. UTF-8 validity is
 * checked by Arrow when the column is built (the caller falls back if it fails). */
static int string(Cursor *c, int64_t *start, int64_t *len) {
    ws(c);
    if (c->p >= c->end || *c->p != '"') return bail(c);
    uint8_t *read = ++c->p, *write = read, *first = read;
    for (;;) {
        if (read >= c->end) return bail(c);
        uint8_t ch = *read;
        if (ch == '"') break;
        if (ch < 0x20) return bail(c);
        if (ch != '\\') { *write++ = *read++; continue; }
        if (read + 1 >= c->end) return bail(c);
        uint8_t e = read[1];
        read += 2;
        switch (e) {
        case '"': *write++ = '"'; break;
        case '\\': *write++ = '\\'; break;
        case '/': *write++ = '/'; break;
        case 'b': *write++ = '\b'; break;
        case 'f': *write++ = '\f'; break;
        case 'n': *write++ = '\n'; break;
        case 'r': *write++ = '\r'; break;
        case 't': *write++ = '\t'; break;
        case 'u': {
            uint32_t cp, low;
            if (c->end - read < 4 || !hex4(read, &cp)) return bail(c);
            read += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (c->end - read < 6 || read[0] != '\\' || read[1] != 'u' || !hex4(read + 2, &low) ||
                    low < 0xDC00 || low > 0xDFFF)
                    return bail(c);
                read += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return bail(c);
            }
            if (cp < 0x80) *write++ = (uint8_t)cp;
            else if (cp < 0x800) { *write++ = (uint8_t)(0xC0 | (cp >> 6)); *write++ = (uint8_t)(0x80 | (cp & 0x3F)); }
            else if (cp < 0x10000) {
                *write++ = (uint8_t)(0xE0 | (cp >> 12));
                *write++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                *write++ = (uint8_t)(0x80 | (cp & 0x3F));
            } else {
                *write++ = (uint8_t)(0xF0 | (cp >> 18));
                *write++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
                *write++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                *write++ = (uint8_t)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: return bail(c);
        }
    }
    c->p = read + 1;
    *start = first - c->base;
    *len = write - first;
    return 1;
}

static int digits(Cursor *c) {
    uint8_t *from = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    return c->p > from;
}

/* A number's exact text, validated by JSON's grammar. */
static int number(Cursor *c, int64_t *start, int64_t *len) {
    ws(c);
    uint8_t *from = c->p;
    if (c->p < c->end && *c->p == '-') c->p++;
    if (c->p < c->end && *c->p == '0') c->p++;
    else if (!digits(c)) return bail(c);
    if (c->p < c->end && *c->p == '.') { c->p++; if (!digits(c)) return bail(c); }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!digits(c)) return bail(c);
    }
    *start = from - c->base;
    *len = c->p - from;
    return 1;
}

static int literal(Cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return bail(c);
    c->p += n;
    return 1;
}

static int skip_value(Cursor *c, int depth);

static int skip_container(Cursor *c, int depth, uint8_t close, int members) {
    int64_t s, l;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == close) { c->p++; return 1; }
    for (;;) {
        if (members && (!string(c, &s, &l) || !expect(c, ':'))) return 0;
        if (!skip_value(c, depth + 1)) return 0;
        ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; continue; }
        return expect(c, close);
    }
}

/* Any JSON value, validated and passed over (a field the flattener does not keep). */
static int skip_value(Cursor *c, int depth) {
    int64_t s, l;
    if (depth > MAX_DEPTH) return bail(c);
    ws(c);
    if (c->p >= c->end) return bail(c);
    switch (*c->p) {
    case '"': return string(c, &s, &l);
    case '{': return skip_container(c, depth, '}', 1);
    case '[': return skip_container(c, depth, ']', 0);
    case 't': return literal(c, "true");
    case 'f': return literal(c, "false");
    case 'n': return literal(c, "null");
    default: return number(c, &s, &l);
    }
}

/* A text field, kept: a string (or null when `nullable`), or a string or number when
 * `raw` (identifiers and amounts, whose published digits are kept). */
static int text(Cursor *c, Spans *into, int nullable, int raw) {
    int64_t s, l;
    ws(c);
    if (c->p >= c->end) return bail(c);
    if (*c->p == '"') { if (!string(c, &s, &l)) return 0; }
    else if (nullable && *c->p == 'n') { if (!literal(c, "null")) return 0; s = 0; l = -1; }
    else if (raw && (*c->p == '-' || (*c->p >= '0' && *c->p <= '9'))) { if (!number(c, &s, &l)) return 0; }
    else return bail(c);
    return push_span(c, into, s, l);
}

/* An array of texts (strings, or strings and numbers when `raw`); then its end offset. */
static int text_list(Cursor *c, Spans *values, Ints *ends, int raw) {
    if (!expect(c, '[')) return 0;
    ws(c);
    if (c->p < c->end && *c->p == ']') c->p++;
    else {
        for (;;) {
            if (!text(c, values, 0, raw)) return 0;
            ws(c);
            if (c->p < c->end && *c->p == ',') { c->p++; continue; }
            if (!expect(c, ']')) return 0;
            break;
        }
    }
    return push_int(c, ends, values->count);
}

/* An array that must be empty here (bundles: the slow path's case). */
static int empty_list(Cursor *c) {
    if (!expect(c, '[')) return 0;
    return expect(c, ']');
}

/* The key of the next member, unescaped; 0 at the object's end. */
static int next_key(Cursor *c, int first, uint8_t **key, int64_t *key_len) {
    int64_t s, l;
    ws(c);
    if (c->p >= c->end) return bail(c);
    if (*c->p == '}' && first) { c->p++; return 0; }
    if (!first) {
        if (*c->p == '}') { c->p++; return 0; }
        if (*c->p != ',') return bail(c);
        c->p++;
    }
    if (!string(c, &s, &l) || !expect(c, ':')) return 0;
    *key = c->base + s;
    *key_len = l;
    return 1;
}

/* The members of the object just opened, one key at a time; ends at the closing brace or
 * when the object cannot be read (then c->status says so: check it after the loop). */
#define EACH_MEMBER(c) for (int first_ = 1; next_key(c, first_, &key, &key_len); first_ = 0)
#define KEY(name) (key_len == (int64_t)sizeof(name) - 1 && memcmp(key, name, sizeof(name) - 1) == 0)
/* Each field once: a duplicate key is left to the slow path. */
#define ONCE(bit) do { if (seen & (bit)) return bail(c); seen |= (bit); } while (0)

static int tin(Cursor *c) {
    Items *o = c->out;
    uint8_t *key; int64_t key_len; uint32_t seen = 0;
    int64_t names = o->business_name.count;
    if (!expect(c, '{')) return 0;
    EACH_MEMBER(c) {
        if (KEY("type")) { ONCE(1); if (!text(c, &o->tin_type, 0, 0)) return 0; }
        else if (KEY("value")) { ONCE(2); if (!text(c, &o->tin_value, 0, 1)) return 0; }
        else if (KEY("business_name")) { ONCE(4); if (!text(c, &o->business_name, 1, 0)) return 0; }
        else if (!skip_value(c, 6)) return 0;
    }
    if (c->status) return 0;
    if ((seen & 3) != 3) return bail(c);
    return o->business_name.count > names || push_span(c, &o->business_name, 0, -1);
}

/* An inline provider group (v1): its NPIs and TIN. */
static int group(Cursor *c, int64_t rate_row, int64_t index) {
    Items *o = c->out;
    uint8_t *key; int64_t key_len; uint32_t seen = 0;
    if (!expect(c, '{')) return 0;
    EACH_MEMBER(c) {
        if (KEY("npi")) { ONCE(1); if (!text_list(c, &o->npis, &o->npis_end, 1)) return 0; }
        else if (KEY("tin")) { ONCE(2); if (!tin(c)) return 0; }
        else if (!skip_value(c, 5)) return 0;
    }
    if (c->status) return 0;
    if (!(seen & 2)) return bail(c);
    if (!(seen & 1) && !push_int(c, &o->npis_end, o->npis.count)) return 0;
    return push_int(c, &o->group_rate, rate_row) && push_int(c, &o->group_index, index);
}

static int price(Cursor *c, int64_t rate_row, int64_t rate_index, int64_t index) {
    Items *o = c->out;
    uint8_t *key; int64_t key_len; uint32_t seen = 0;
    int64_t before[6] = {o->ntype.count, o->amount.count, o->expiration.count,
                         o->bclass.count, o->setting.count, o->info.count};
    if (!expect(c, '{')) return 0;
    EACH_MEMBER(c) {
        if (KEY("negotiated_type")) { ONCE(1); if (!text(c, &o->ntype, 0, 0)) return 0; }
        else if (KEY("negotiated_rate")) { ONCE(2); if (!text(c, &o->amount, 0, 1)) return 0; }
        else if (KEY("expiration_date")) { ONCE(4); if (!text(c, &o->expiration, 0, 0)) return 0; }
        else if (KEY("billing_class")) { ONCE(8); if (!text(c, &o->bclass, 0, 0)) return 0; }
        else if (KEY("setting")) { ONCE(16); if (!text(c, &o->setting, 1, 0)) return 0; }
        else if (KEY("additional_information")) { ONCE(32); if (!text(c, &o->info, 1, 0)) return 0; }
        else if (KEY("service_code")) { ONCE(64); if (!text_list(c, &o->services, &o->services_end, 0)) return 0; }
        else if (KEY("billing_code_modifier")) {
            ONCE(128);
            if (!text_list(c, &o->modifiers, &o->modifiers_end, 0)) return 0;
        } else if (!skip_value(c, 3)) return 0;
    }
    if (c->status) return 0;
    if ((seen & 15) != 15) return bail(c); /* a required field is missing */
    /* Optional fields left out: null texts, empty lists, in column order. */
    Spans *optional[2] = {&o->setting, &o->info};
    for (int k = 0; k < 2; k++)
        if (optional[k]->count == before[4 + k] && !push_span(c, optional[k], 0, -1)) return 0;
    if (!(seen & 64) && !push_int(c, &o->services_end, o->services.count)) return 0;
    if (!(seen & 128) && !push_int(c, &o->modifiers_end, o->modifiers.count)) return 0;
    return push_int(c, &o->price_rate, rate_row) && push_int(c, &o->price_rate_index, rate_index) &&
           push_int(c, &o->price_index, index);
}

/* A negotiated rate: its prices; returns how many, or -1. */
static int64_t rate(Cursor *c, int64_t item_row, int64_t index) {
    Items *o = c->out;
    uint8_t *key; int64_t key_len; uint32_t seen = 0;
    int64_t rate_row = o->rate_item.count, prices = 0, groups = 0;
    if (!expect(c, '{')) return -1;
    EACH_MEMBER(c) {
        if (KEY("negotiated_prices")) {
            ONCE(1);
            if (!expect(c, '[')) return -1;
            ws(c);
            if (c->p < c->end && *c->p == ']') { c->p++; continue; }
            for (;;) {
                if (!price(c, rate_row, index, prices)) return -1;
                prices++;
                ws(c);
                if (c->p < c->end && *c->p == ',') { c->p++; continue; }
                if (!expect(c, ']')) return -1;
                break;
            }
        } else if (KEY("provider_references")) {
            ONCE(2);
            if (!text_list(c, &o->refs, &o->refs_end, 1)) return -1;
        } else if (KEY("provider_groups")) {
            ONCE(4);
            if (!expect(c, '[')) return -1;
            ws(c);
            if (c->p < c->end && *c->p == ']') { c->p++; continue; }
            for (;;) {
                if (!group(c, rate_row, groups)) return -1;
                groups++;
                ws(c);
                if (c->p < c->end && *c->p == ',') { c->p++; continue; }
                if (!expect(c, ']')) return -1;
                break;
            }
        } else if (!skip_value(c, 2)) return -1;
    }
    if (c->status) return -1;
    if (!(seen & 1)) { bail(c); return -1; }
    if (!(seen & 2) && !push_int(c, &o->refs_end, o->refs.count)) return -1;
    if (!push_int(c, &o->rate_item, item_row) || !push_int(c, &o->rate_inline, groups > 0)) return -1;
    return prices;
}

static int item(Cursor *c, int64_t element) {
    Items *o = c->out;
    uint8_t *key; int64_t key_len; uint32_t seen = 0;
    int64_t item_row = o->item_element.count, rates = 0, prices = 0;
    Spans *texts[7] = {&o->arrangement, &o->name, &o->code_type, &o->code,
                       &o->code_version, &o->description, &o->severity};
    int64_t before[7];
    for (int k = 0; k < 7; k++) before[k] = texts[k]->count;
    if (!expect(c, '{')) return 0;
    EACH_MEMBER(c) {
        if (KEY("negotiation_arrangement")) { ONCE(1); if (!text(c, &o->arrangement, 0, 0)) return 0; }
        else if (KEY("name")) { ONCE(2); if (!text(c, &o->name, 0, 0)) return 0; }
        else if (KEY("billing_code_type")) { ONCE(4); if (!text(c, &o->code_type, 0, 0)) return 0; }
        else if (KEY("billing_code")) { ONCE(8); if (!text(c, &o->code, 0, 1)) return 0; }
        else if (KEY("negotiated_rates")) {
            ONCE(16);
            if (!expect(c, '[')) return 0;
            ws(c);
            if (c->p < c->end && *c->p == ']') { c->p++; continue; }
            for (;;) {
                int64_t n = rate(c, item_row, rates);
                if (n < 0 || c->status) return 0; /* ONCE in rate() bails with 0 */
                rates++;
                prices += n;
                ws(c);
                if (c->p < c->end && *c->p == ',') { c->p++; continue; }
                if (!expect(c, ']')) return 0;
                break;
            }
        }
        else if (KEY("billing_code_type_version")) { ONCE(32); if (!text(c, &o->code_version, 1, 0)) return 0; }
        else if (KEY("description")) { ONCE(64); if (!text(c, &o->description, 1, 0)) return 0; }
        else if (KEY("severity_of_illness")) { ONCE(128); if (!text(c, &o->severity, 1, 0)) return 0; }
        else if (KEY("bundled_codes")) { ONCE(256); if (!empty_list(c)) return 0; }
        else if (KEY("covered_services")) { ONCE(512); if (!empty_list(c)) return 0; }
        else if (!skip_value(c, 1)) return 0;
    }
    if (c->status) return 0;
    if ((seen & 31) != 31) return bail(c);
    for (int k = 4; k < 7; k++)
        if (texts[k]->count == before[k] && !push_span(c, texts[k], 0, -1)) return 0;
    return push_int(c, &o->item_element, element) && push_int(c, &o->item_rates, rates) &&
           push_int(c, &o->item_prices, prices);
}

#define SPANS_OF(o) { &o->arrangement, &o->name, &o->code_type, &o->code_version, &o->code, \
    &o->description, &o->severity, &o->refs, &o->tin_type, &o->tin_value, &o->business_name, &o->npis, \
    &o->ntype, &o->amount, &o->expiration, &o->bclass, &o->setting, &o->info, &o->services, &o->modifiers }
#define INTS_OF(o) { &o->item_element, &o->item_rates, &o->item_prices, &o->rate_item, &o->refs_end, \
    &o->rate_inline, &o->group_rate, &o->group_index, &o->npis_end, &o->price_rate, &o->price_rate_index, \
    &o->price_index, &o->services_end, &o->modifiers_end }
#define N_SPANS 20
#define N_INTS 14

/* Elements buf[starts[i]:ends[i]] from i = first on, until one is not OK; returns the
 * index it stopped at (n: all done), and in *status why (OK, BAIL or FULL). An element that stops is rolled
 * back: the columns hold whole elements only. */
int64_t mrf_items(uint8_t *buf, const int64_t *starts, const int64_t *ends, int64_t first, int64_t n,
                  Items *out, int64_t *status) {
    Spans *spans[N_SPANS] = SPANS_OF(out);
    Ints *ints[N_INTS] = INTS_OF(out);
    int64_t i;
    *status = OK;
    for (i = first; i < n; i++) {
        int64_t span_counts[N_SPANS], int_counts[N_INTS];
        for (int k = 0; k < N_SPANS; k++) span_counts[k] = spans[k]->count;
        for (int k = 0; k < N_INTS; k++) int_counts[k] = ints[k]->count;
        Cursor c = {buf + starts[i], buf + ends[i], buf, OK, out};
        if (item(&c, i)) {
            ws(&c);
            if (c.p != c.end) bail(&c);
        } else if (c.status == OK) {
            bail(&c);
        }
        if (c.status != OK) {
            for (int k = 0; k < N_SPANS; k++) spans[k]->count = span_counts[k];
            for (int k = 0; k < N_INTS; k++) ints[k]->count = int_counts[k];
            *status = c.status;
            return i;
        }
    }
    return i;
}

/* Spans into one contiguous text buffer with Arrow's int32 offsets (null: empty). */
void mrf_gather(const uint8_t *buf, const int64_t *start, const int32_t *len, int64_t n, uint8_t *out,
                int32_t *offsets) {
    int32_t at = 0;
    offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        if (len[i] > 0) {
            memcpy(out + at, buf + start[i], (size_t)len[i]);
            at += len[i];
        }
        offsets[i + 1] = at;
    }
}
