// Implements etl/extract.h: the HTML extractor (gumbo's tree, walked without recursion so that
// deep nesting cannot exhaust the stack; links resolved with libcurl's URL API), the Markdown
// extractor (cmark's AST, after an optional YAML/TOML front matter), plain text, the binary
// sniffer and the file kinds by name.
#include "etl/extract.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <cmark.h>
#include <curl/curl.h>
#include <gumbo.h>

#include "base/error.h"
#include "base/map.h"
#include "base/mem.h"

void tw_extracted_init(struct tw_extracted *e)
{
    tw_str_init(&e->text);
    tw_str_init(&e->title);
    tw_vec_init(&e->links, sizeof(char *));
}

void tw_extracted_free(struct tw_extracted *e)
{
    for (size_t i = 0; i < e->links.len; i++)
        tw_free(TW_VEC_AT(&e->links, char *, i));
    tw_vec_free(&e->links);
    tw_str_free(&e->text);
    tw_str_free(&e->title);
}

// On success the result replaces what out held; on failure out is left as it was.
static int finish(struct tw_extracted *tmp, int rc, struct tw_extracted *out)
{
    if (rc) {
        tw_extracted_free(tmp);
        return rc == TW_ENOMEM ? tw_error_set(TW_ENOMEM, "extract: out of memory") : rc;
    }
    tw_extracted_free(out);
    *out = *tmp;
    return 0;
}

// ---- the text builder: breaks between blocks are pending until text follows, so that empty
// blocks leave nothing and the text never starts or ends with a break.

struct out {
    tw_str *s;
    int pending_nl;     // newlines wanted before the next text (0, 1 or 2)
    bool pending_space; // a collapsed run of white space before the next text
    int rc;
};

static void out_init(struct out *o, tw_str *s)
{
    *o = (struct out){ .s = s };
}

static void out_append(struct out *o, const char *p, size_t n)
{
    if (!o->rc && tw_str_append(o->s, p, n))
        o->rc = TW_ENOMEM;
}

static void out_break(struct out *o, int n)
{
    if (n > o->pending_nl)
        o->pending_nl = n;
}

// Emits the pending break (counting newlines the text ends with already) or space.
static void out_flush(struct out *o)
{
    size_t len = tw_str_len(o->s);
    const char *s = tw_str_cstr(o->s);
    if (len && o->pending_nl) {
        int have = 0;
        while ((size_t)have < len && have < 2 && s[len - 1 - (size_t)have] == '\n')
            have++;
        for (int i = have; i < o->pending_nl; i++)
            out_append(o, "\n", 1);
    } else if (len && o->pending_space && s[len - 1] != '\n') {
        out_append(o, " ", 1);
    }
    o->pending_nl = 0;
    o->pending_space = false;
}

static bool is_html_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

// Text as it is (inside <pre>, Markdown literals).
static void out_verbatim(struct out *o, const char *p, size_t n)
{
    if (!n)
        return;
    out_flush(o);
    out_append(o, p, n);
}

// Text whose runs of white space collapse to one space.
static void out_inline(struct out *o, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (is_html_space(p[i])) {
            o->pending_space = true;
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !is_html_space(p[j]))
            j++;
        out_flush(o);
        out_append(o, p + i, j - i);
        i = j;
    }
}

// Cuts trailing white space (and a <pre>'s last newline).
static void trim_end(tw_str *s)
{
    size_t n = tw_str_len(s);
    const char *p = tw_str_cstr(s);
    while (n && (is_html_space(p[n - 1]) || p[n - 1] == '\v'))
        n--;
    tw_str_truncate(s, n);
}

// Collapses every run of white space (newlines too) to one space and trims: for titles.
static void collapse_line(tw_str *s)
{
    char *p = s->v.data;
    size_t n = tw_str_len(s), w = 0;
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        if (is_html_space(p[i]) || p[i] == '\v') {
            space = w > 0;
            continue;
        }
        if (space)
            p[w++] = ' ';
        space = false;
        p[w++] = p[i];
    }
    tw_str_truncate(s, w);
}

// ---- HTML: a walk over gumbo's tree with an explicit stack

struct frame {
    const GumboNode *node;
    unsigned next; // the next child to visit
};

// enter returns 1 to visit the children, 0 to pass them over, < 0 to stop with that error;
// leave is called after the children of an element that was entered with 1.
typedef int (*enter_fn)(void *ctx, const GumboNode *n);
typedef void (*leave_fn)(void *ctx, const GumboNode *n);

static const GumboVector *children_of(const GumboNode *n)
{
    switch (n->type) {
    case GUMBO_NODE_DOCUMENT:
        return &n->v.document.children;
    case GUMBO_NODE_ELEMENT:
    case GUMBO_NODE_TEMPLATE:
        return &n->v.element.children;
    default:
        return NULL;
    }
}

static int walk(const GumboNode *root, void *ctx, enter_fn enter, leave_fn leave)
{
    int rc = enter(ctx, root);
    if (rc <= 0 || !children_of(root))
        return rc < 0 ? rc : 0;
    rc = 0;
    tw_vec stack;
    tw_vec_init(&stack, sizeof(struct frame));
    struct frame f0 = { root, 0 };
    if (tw_vec_push(&stack, &f0))
        return TW_ENOMEM;
    while (stack.len) {
        struct frame *f = &TW_VEC_AT(&stack, struct frame, stack.len - 1);
        const GumboVector *ch = children_of(f->node);
        if (f->next >= ch->length) {
            if (leave)
                leave(ctx, f->node);
            stack.len--; // no shrink: the stack lives for one walk
            continue;
        }
        const GumboNode *c = ch->data[f->next++];
        rc = enter(ctx, c);
        if (rc < 0)
            break;
        if (rc > 0 && children_of(c)) {
            struct frame fc = { c, 0 };
            if (tw_vec_push(&stack, &fc)) {
                rc = TW_ENOMEM;
                break;
            }
        } else if (rc > 0 && leave) {
            leave(ctx, c);
        }
        rc = 0;
    }
    tw_vec_free(&stack);
    return rc;
}

static bool is_html_el(const GumboNode *n, GumboTag tag)
{
    return n->type == GUMBO_NODE_ELEMENT && n->v.element.tag == tag &&
           n->v.element.tag_namespace == GUMBO_NAMESPACE_HTML;
}

static const char *attr(const GumboNode *n, const char *name)
{
    if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_TEMPLATE)
        return NULL;
    const GumboAttribute *a = gumbo_get_attribute(&n->v.element.attributes, name);
    return a ? a->value : NULL;
}

// Whether the white-space-separated list s holds word (ASCII case-insensitive).
static bool has_token(const char *s, const char *word)
{
    size_t wl = strlen(word);
    while (s && *s) {
        while (is_html_space(*s))
            s++;
        size_t n = 0;
        while (s[n] && !is_html_space(s[n]))
            n++;
        if (n == wl && strncasecmp(s, word, n) == 0)
            return true;
        s += n;
    }
    return false;
}

// display:none in an inline style (white space and case ignored).
static bool style_hides(const char *style)
{
    static const char want[] = "display:none";
    for (const char *p = style; p && *p; p++) {
        const char *q = p;
        size_t k = 0;
        while (*q && k < sizeof want - 1) {
            if (is_html_space(*q)) {
                q++;
                continue;
            }
            char c = *q >= 'A' && *q <= 'Z' ? (char)(*q - 'A' + 'a') : *q;
            if (c != want[k])
                break;
            q++, k++;
        }
        if (k == sizeof want - 1)
            return true;
    }
    return false;
}

// Elements that never hold the page's prose.
static bool dropped_tag(GumboTag t)
{
    switch (t) {
    case GUMBO_TAG_HEAD:
    case GUMBO_TAG_TITLE: // in the body of broken pages
    case GUMBO_TAG_SCRIPT:
    case GUMBO_TAG_STYLE:
    case GUMBO_TAG_NOSCRIPT:
    case GUMBO_TAG_TEMPLATE:
    case GUMBO_TAG_NAV:
    case GUMBO_TAG_FOOTER:
    case GUMBO_TAG_ASIDE:
    case GUMBO_TAG_FORM:
    case GUMBO_TAG_IFRAME:
    case GUMBO_TAG_SVG:
    case GUMBO_TAG_MATH:
    case GUMBO_TAG_BUTTON:
    case GUMBO_TAG_SELECT:
    case GUMBO_TAG_TEXTAREA:
    case GUMBO_TAG_CANVAS:
    case GUMBO_TAG_VIDEO:
    case GUMBO_TAG_AUDIO:
    case GUMBO_TAG_OBJECT:
    case GUMBO_TAG_EMBED:
    case GUMBO_TAG_APPLET:
    case GUMBO_TAG_NOEMBED:
    case GUMBO_TAG_NOFRAMES:
    case GUMBO_TAG_FRAMESET:
        return true;
    default:
        return false;
    }
}

// Whether an element and everything in it is left out of the text. header is kept inside
// sectioning content (an article's header holds its heading: only a page-level header is a
// banner, as ARIA maps it).
static bool dropped(const GumboNode *n, int sect_depth)
{
    if (n->type == GUMBO_NODE_TEMPLATE || n->type == GUMBO_NODE_COMMENT)
        return true;
    if (n->type != GUMBO_NODE_ELEMENT)
        return false;
    GumboTag t = n->v.element.tag;
    if (dropped_tag(t) || (t == GUMBO_TAG_HEADER && sect_depth == 0))
        return true;
    const char *role = attr(n, "role");
    if (role && (has_token(role, "navigation") || has_token(role, "banner") ||
                 has_token(role, "contentinfo") || has_token(role, "complementary")))
        return true;
    if (attr(n, "hidden"))
        return true;
    const char *ah = attr(n, "aria-hidden");
    if (ah && strcasecmp(ah, "true") == 0)
        return true;
    return style_hides(attr(n, "style"));
}

static bool is_sectioning(const GumboNode *n)
{
    if (n->type != GUMBO_NODE_ELEMENT)
        return false;
    GumboTag t = n->v.element.tag;
    return t == GUMBO_TAG_ARTICLE || t == GUMBO_TAG_SECTION || t == GUMBO_TAG_MAIN;
}

static bool is_pre(GumboTag t)
{
    return t == GUMBO_TAG_PRE || t == GUMBO_TAG_LISTING || t == GUMBO_TAG_XMP ||
           t == GUMBO_TAG_PLAINTEXT;
}

// The break a block element puts around itself: 2 (a blank line), 1 (a line break), or 0
// (inline; table cells get a space).
static int block_break(GumboTag t)
{
    switch (t) {
    case GUMBO_TAG_P:
    case GUMBO_TAG_H1:
    case GUMBO_TAG_H2:
    case GUMBO_TAG_H3:
    case GUMBO_TAG_H4:
    case GUMBO_TAG_H5:
    case GUMBO_TAG_H6:
    case GUMBO_TAG_PRE:
    case GUMBO_TAG_LISTING:
    case GUMBO_TAG_XMP:
    case GUMBO_TAG_PLAINTEXT:
    case GUMBO_TAG_BLOCKQUOTE:
    case GUMBO_TAG_UL:
    case GUMBO_TAG_OL:
    case GUMBO_TAG_DL:
    case GUMBO_TAG_MENU:
    case GUMBO_TAG_DIR:
    case GUMBO_TAG_TABLE:
    case GUMBO_TAG_HR:
    case GUMBO_TAG_FIGURE:
    case GUMBO_TAG_ADDRESS:
    case GUMBO_TAG_SECTION:
    case GUMBO_TAG_ARTICLE:
    case GUMBO_TAG_MAIN:
    case GUMBO_TAG_HEADER:
    case GUMBO_TAG_DETAILS:
    case GUMBO_TAG_FIELDSET:
    case GUMBO_TAG_CENTER:
        return 2;
    case GUMBO_TAG_DIV:
    case GUMBO_TAG_LI:
    case GUMBO_TAG_DT:
    case GUMBO_TAG_DD:
    case GUMBO_TAG_TR:
    case GUMBO_TAG_CAPTION:
    case GUMBO_TAG_FIGCAPTION:
    case GUMBO_TAG_SUMMARY:
    case GUMBO_TAG_LEGEND:
    case GUMBO_TAG_OPTION:
    case GUMBO_TAG_HGROUP:
    case GUMBO_TAG_BODY:
    case GUMBO_TAG_HTML:
        return 1;
    default:
        return 0;
    }
}

struct text_ctx {
    struct out o;
    int pre;        // depth of <pre>-like elements
    int sect_depth; // depth of article/section/main elements
};

static int text_enter(void *ctx, const GumboNode *n)
{
    struct text_ctx *c = ctx;
    switch (n->type) {
    case GUMBO_NODE_TEXT:
    case GUMBO_NODE_CDATA:
    case GUMBO_NODE_WHITESPACE:
        if (c->pre)
            out_verbatim(&c->o, n->v.text.text, strlen(n->v.text.text));
        else
            out_inline(&c->o, n->v.text.text, strlen(n->v.text.text));
        return c->o.rc ? c->o.rc : 0;
    case GUMBO_NODE_ELEMENT:
        break;
    default:
        return 0;
    }
    if (dropped(n, c->sect_depth))
        return 0;
    GumboTag t = n->v.element.tag;
    if (t == GUMBO_TAG_BR) {
        out_break(&c->o, c->o.pending_nl < 2 ? c->o.pending_nl + 1 : 2);
        return 0;
    }
    if (t == GUMBO_TAG_TD || t == GUMBO_TAG_TH)
        c->o.pending_space = true;
    out_break(&c->o, block_break(t));
    if (is_pre(t))
        c->pre++;
    if (is_sectioning(n))
        c->sect_depth++;
    return 1;
}

static void text_leave(void *ctx, const GumboNode *n)
{
    struct text_ctx *c = ctx;
    if (n->type != GUMBO_NODE_ELEMENT)
        return;
    GumboTag t = n->v.element.tag;
    if (t == GUMBO_TAG_TD || t == GUMBO_TAG_TH)
        c->o.pending_space = true;
    out_break(&c->o, block_break(t));
    if (is_pre(t))
        c->pre--;
    if (is_sectioning(n))
        c->sect_depth--;
}

// Appends the text of the subtree at root to s.
static int node_text(const GumboNode *root, int sect_depth, tw_str *s)
{
    struct text_ctx c = { .sect_depth = sect_depth };
    out_init(&c.o, s);
    int rc = walk(root, &c, text_enter, text_leave);
    if (!rc)
        rc = c.o.rc;
    if (!rc)
        out_break(&c.o, 2); // the next root starts a new paragraph
    return rc;
}

// ---- the first pass: where the main content is, the title, <base href> and the links

struct scan_ctx {
    int sect_depth;
    int drop_depth;        // > 0 inside a dropped element (its links still count)
    int article_depth;     // > 0 inside a kept <article>
    const GumboNode *main; // the first kept <main> (or role=main)
    tw_vec articles;       // const GumboNode *: the outermost kept <article>s
    const GumboNode *title;
    const GumboNode *h1;
    const GumboNode *base; // the first <base href>
    tw_vec anchors;        // const GumboNode *: every <a href>
    bool want_links;
};

static bool is_main(const GumboNode *n)
{
    if (is_html_el(n, GUMBO_TAG_MAIN))
        return true;
    const char *role = attr(n, "role");
    return n->type == GUMBO_NODE_ELEMENT && role && has_token(role, "main");
}

static int scan_enter(void *ctx, const GumboNode *n)
{
    struct scan_ctx *c = ctx;
    if (n->type == GUMBO_NODE_DOCUMENT)
        return 1;
    if (n->type != GUMBO_NODE_ELEMENT)
        return 0;
    GumboTag t = n->v.element.tag;
    bool html = n->v.element.tag_namespace == GUMBO_NAMESPACE_HTML;
    if (!html || t == GUMBO_TAG_SCRIPT || t == GUMBO_TAG_STYLE)
        return 0; // foreign content: no <title>, <a> or <base> of the page in there
    if (t == GUMBO_TAG_TITLE && !c->title)
        c->title = n;
    else if (t == GUMBO_TAG_H1 && !c->h1 && !c->drop_depth)
        c->h1 = n;
    else if (t == GUMBO_TAG_BASE && !c->base && attr(n, "href"))
        c->base = n;
    else if (t == GUMBO_TAG_A && c->want_links && attr(n, "href") && tw_vec_push(&c->anchors, &n))
        return TW_ENOMEM;
    if (c->drop_depth || dropped(n, c->sect_depth)) {
        c->drop_depth++;
        return 1;
    }
    if (!c->main && is_main(n))
        c->main = n;
    if (t == GUMBO_TAG_ARTICLE) {
        if (!c->article_depth && tw_vec_push(&c->articles, &n))
            return TW_ENOMEM;
        c->article_depth++;
    }
    if (is_sectioning(n))
        c->sect_depth++;
    return 1;
}

static void scan_leave(void *ctx, const GumboNode *n)
{
    struct scan_ctx *c = ctx;
    if (n->type != GUMBO_NODE_ELEMENT)
        return;
    if (c->drop_depth) {
        c->drop_depth--;
        return;
    }
    if (n->v.element.tag == GUMBO_TAG_ARTICLE)
        c->article_depth--;
    if (is_sectioning(n))
        c->sect_depth--;
}

// ---- links

// href without the white space the URL standard strips (leading, trailing; tabs and newlines
// anywhere) in *out, or NULL when nothing is left or it points into the page itself ("#top").
// 0 or TW_ENOMEM.
static int clean_href(const char *href, char **out)
{
    *out = NULL;
    while (is_html_space(*href))
        href++;
    size_t n = strlen(href);
    while (n && is_html_space(href[n - 1]))
        n--;
    if (!n || href[0] == '#')
        return 0;
    char *s = tw_malloc(n + 1);
    if (!s)
        return TW_ENOMEM;
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (href[i] != '\t' && href[i] != '\n' && href[i] != '\r')
            s[w++] = href[i];
    s[w] = 0;
    *out = s;
    return 0;
}

// Spaces in an href are common in the wild: encode them (%20) instead of refusing the link.
#define URL_FLAGS (CURLU_ALLOW_SPACE | CURLU_URLENCODE)

// Resolves href against base (which it leaves alone) into an absolute http(s) URL without
// fragment and with a lower-case host; *url is NULL when href is not such a link.
static int resolve(CURLU *base, const char *href, char **url)
{
    *url = NULL;
    char *h;
    if (clean_href(href, &h))
        return TW_ENOMEM;
    if (!h)
        return 0;
    CURLU *u = curl_url_dup(base);
    if (!u) {
        tw_free(h);
        return TW_ENOMEM;
    }
    char *scheme = NULL, *host = NULL, *s = NULL;
    int rc = 0;
    if (curl_url_set(u, CURLUPART_URL, h, URL_FLAGS) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0]) {
        for (char *p = host; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        if (curl_url_set(u, CURLUPART_HOST, host, 0) == CURLUE_OK &&
            curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) {
            *url = tw_strdup(s);
            if (!*url)
                rc = TW_ENOMEM;
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(s);
    curl_url_cleanup(u);
    tw_free(h);
    return rc;
}

static int collect_links(const struct scan_ctx *sc, const char *base_url, tw_vec *links)
{
    CURLU *base = curl_url();
    if (!base)
        return TW_ENOMEM;
    // An unusable base leaves the handle empty: only absolute hrefs resolve then.
    if (curl_url_set(base, CURLUPART_URL, base_url, 0) != CURLUE_OK) {
        curl_url_cleanup(base);
        if (!(base = curl_url()))
            return TW_ENOMEM;
    }
    if (sc->base) {
        char *h;
        if (clean_href(attr(sc->base, "href"), &h)) {
            curl_url_cleanup(base);
            return TW_ENOMEM;
        }
        if (h) {
            CURLU *b2 = curl_url_dup(base);
            if (b2 && curl_url_set(b2, CURLUPART_URL, h, URL_FLAGS) == CURLUE_OK) {
                curl_url_cleanup(base);
                base = b2;
            } else {
                curl_url_cleanup(b2);
            }
            tw_free(h);
        }
    }
    tw_map seen;
    tw_map_init(&seen, TW_MAP_STR);
    int rc = 0;
    for (size_t i = 0; !rc && i < sc->anchors.len; i++) {
        const GumboNode *a = TW_VEC_AT(&sc->anchors, const GumboNode *, i);
        char *url;
        rc = resolve(base, attr(a, "href"), &url);
        if (rc || !url)
            continue;
        size_t n = strlen(url);
        if (tw_map_get_str(&seen, url, n, NULL)) {
            tw_free(url);
            continue;
        }
        if (tw_map_put_str(&seen, url, n, 0) || tw_vec_push(links, &url)) {
            tw_free(url);
            rc = TW_ENOMEM;
        }
    }
    tw_map_free(&seen);
    curl_url_cleanup(base);
    return rc;
}

// ---- HTML, all together

static const GumboNode *find_body(const GumboNode *root)
{
    const GumboVector *ch = children_of(root);
    for (unsigned i = 0; ch && i < ch->length; i++)
        if (is_html_el(ch->data[i], GUMBO_TAG_BODY))
            return ch->data[i];
    return root;
}

static int html_content(const struct scan_ctx *sc, const GumboNode *root, tw_str *text)
{
    int rc = 0;
    if (sc->main) {
        rc = node_text(sc->main, 0, text);
    } else {
        for (size_t i = 0; !rc && i < sc->articles.len; i++)
            rc = node_text(TW_VEC_AT(&sc->articles, const GumboNode *, i), 0, text);
    }
    if (!rc && tw_str_len(text) == 0) // no main content, or an empty one: the whole body
        rc = node_text(find_body(root), 0, text);
    if (!rc)
        trim_end(text);
    return rc;
}

static int html_title(const struct scan_ctx *sc, tw_str *title)
{
    int rc = 0;
    if (sc->title) { // RCDATA: its children are text
        const GumboVector *ch = children_of(sc->title);
        for (unsigned i = 0; !rc && i < ch->length; i++) {
            const GumboNode *t = ch->data[i];
            if ((t->type == GUMBO_NODE_TEXT || t->type == GUMBO_NODE_WHITESPACE) &&
                tw_str_puts(title, t->v.text.text))
                rc = TW_ENOMEM;
        }
        collapse_line(title);
    }
    if (!rc && tw_str_len(title) == 0 && sc->h1) {
        rc = node_text(sc->h1, 1, title);
        collapse_line(title);
    }
    return rc;
}

int tw_extract_html(const char *html, size_t len, const char *base_url, struct tw_extracted *out)
{
    GumboOptions opts = kGumboDefaultOptions;
    opts.max_errors = 0; // the parse errors are not used: do not spend memory on them
    GumboOutput *g = gumbo_parse_with_options(&opts, html ? html : "", html ? len : 0);
    if (!g)
        return tw_error_set(TW_ENOMEM, "extract: out of memory");
    struct tw_extracted tmp;
    tw_extracted_init(&tmp);
    struct scan_ctx sc = { .want_links = base_url != NULL };
    tw_vec_init(&sc.articles, sizeof(const GumboNode *));
    tw_vec_init(&sc.anchors, sizeof(const GumboNode *));
    int rc = walk(g->document, &sc, scan_enter, scan_leave);
    if (!rc)
        rc = html_content(&sc, g->root, &tmp.text);
    if (!rc)
        rc = html_title(&sc, &tmp.title);
    if (!rc && base_url)
        rc = collect_links(&sc, base_url, &tmp.links);
    tw_vec_free(&sc.articles);
    tw_vec_free(&sc.anchors);
    gumbo_destroy_output(&opts, g);
    return finish(&tmp, rc, out);
}

// ---- Markdown

// The length of the line at p (without its end) and where the next one starts.
static size_t line_at(const char *p, const char *end, const char **next)
{
    const char *e = memchr(p, '\n', (size_t)(end - p));
    *next = e ? e + 1 : end;
    size_t n = (size_t)((e ? e : end) - p);
    if (n && p[n - 1] == '\r')
        n--;
    return n;
}

static bool is_fence(const char *p, size_t n, const char *fence)
{
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return n == 3 && memcmp(p, fence, 3) == 0;
}

// A front matter block: "---" ... "---" or "..." (YAML), "+++" ... "+++" (TOML), at the very
// start. Returns its length (0 when none) and copies a "title:" / "title =" value to title.
static size_t front_matter(const char *md, size_t len, tw_str *title, int *rc)
{
    const char *end = md + len, *p, *next;
    size_t n = line_at(md, end, &next);
    const char *fence = is_fence(md, n, "---") ? "---" : is_fence(md, n, "+++") ? "+++" : NULL;
    if (!fence)
        return 0;
    const char *title_at = NULL;
    size_t title_len = 0;
    for (p = next; p < end; p = next) {
        n = line_at(p, end, &next);
        if (is_fence(p, n, fence) || (fence[0] == '-' && is_fence(p, n, "..."))) {
            if (title_at) {
                while (title_len && (title_at[0] == ' ' || title_at[0] == '\t'))
                    title_at++, title_len--;
                while (title_len &&
                       (title_at[title_len - 1] == ' ' || title_at[title_len - 1] == '\t'))
                    title_len--;
                if (title_len >= 2 && (title_at[0] == '"' || title_at[0] == '\'') &&
                    title_at[title_len - 1] == title_at[0])
                    title_at++, title_len -= 2;
                if (tw_str_append(title, title_at, title_len))
                    *rc = TW_ENOMEM;
            }
            return (size_t)(next - md);
        }
        char sep = fence[0] == '-' ? ':' : '=';
        if (!title_at && n > 5 && memcmp(p, "title", 5) == 0) {
            size_t k = 5;
            while (k < n && (p[k] == ' ' || p[k] == '\t'))
                k++;
            if (k < n && p[k] == sep)
                title_at = p + k + 1, title_len = n - k - 1;
        }
    }
    return 0; // never closed: not front matter
}

// The break before a block node: list items and the paragraphs of tight lists start a line,
// other blocks a paragraph.
static int md_break(cmark_node *n)
{
    cmark_node *parent = cmark_node_parent(n);
    switch (cmark_node_get_type(n)) {
    case CMARK_NODE_ITEM:
        return 1;
    case CMARK_NODE_PARAGRAPH:
    case CMARK_NODE_LIST: {
        cmark_node *list = parent ? cmark_node_parent(parent) : NULL;
        if (parent && cmark_node_get_type(parent) == CMARK_NODE_ITEM && list &&
            cmark_node_get_list_tight(list))
            return 1;
        return 2;
    }
    default:
        return 2;
    }
}

static int md_walk(cmark_node *doc, tw_str *text, tw_str *title, bool want_title)
{
    cmark_iter *it = cmark_iter_new(doc);
    if (!it)
        return TW_ENOMEM;
    struct out o;
    out_init(&o, text);
    cmark_node *title_node = NULL;
    int in_image = 0;
    cmark_event_type ev;
    while (!o.rc && (ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
        cmark_node *n = cmark_iter_get_node(it);
        cmark_node_type t = cmark_node_get_type(n);
        bool enter = ev == CMARK_EVENT_ENTER;
        if (t == CMARK_NODE_IMAGE) { // its alt text is not prose
            in_image += enter ? 1 : -1;
            continue;
        }
        if (in_image)
            continue;
        if (t == CMARK_NODE_HEADING && want_title && enter && !title_node) {
            title_node = n;
        } else if (t == CMARK_NODE_HEADING && !enter && n == title_node) {
            want_title = false;
            collapse_line(title);
        }
        bool to_title = want_title && title_node;
        const char *lit = NULL;
        switch (t) {
        case CMARK_NODE_TEXT:
        case CMARK_NODE_CODE:
            lit = cmark_node_get_literal(n);
            lit = lit ? lit : "";
            out_verbatim(&o, lit, strlen(lit));
            break;
        case CMARK_NODE_SOFTBREAK:
        case CMARK_NODE_LINEBREAK:
            out_verbatim(&o, "\n", 1);
            lit = " ";
            break;
        case CMARK_NODE_CODE_BLOCK: {
            out_break(&o, 2);
            const char *code = cmark_node_get_literal(n);
            size_t cl = code ? strlen(code) : 0;
            while (cl && code[cl - 1] == '\n')
                cl--;
            out_verbatim(&o, code, cl);
            out_break(&o, 2);
            break;
        }
        case CMARK_NODE_HTML_BLOCK:
        case CMARK_NODE_HTML_INLINE:
            break; // markup, not text
        default:
            if (t >= CMARK_NODE_FIRST_BLOCK && t <= CMARK_NODE_LAST_BLOCK)
                out_break(&o, md_break(n));
            break;
        }
        if (lit && to_title && tw_str_puts(title, lit))
            o.rc = TW_ENOMEM;
    }
    cmark_iter_free(it);
    if (!o.rc)
        trim_end(text);
    return o.rc;
}

int tw_extract_markdown(const char *md, size_t len, struct tw_extracted *out)
{
    if (!md)
        md = "", len = 0;
    struct tw_extracted tmp;
    tw_extracted_init(&tmp);
    if (len >= 3 && memcmp(md, "\xEF\xBB\xBF", 3) == 0)
        md += 3, len -= 3;
    int rc = 0;
    size_t skip = front_matter(md, len, &tmp.title, &rc);
    if (!rc) {
        collapse_line(&tmp.title);
        cmark_node *doc = cmark_parse_document(md + skip, len - skip, CMARK_OPT_DEFAULT);
        if (!doc)
            rc = TW_ENOMEM;
        else
            rc = md_walk(doc, &tmp.text, &tmp.title, tw_str_len(&tmp.title) == 0);
        cmark_node_free(doc);
    }
    return finish(&tmp, rc, out);
}

// ---- plain text

#define TITLE_MAX 120

int tw_extract_text(const char *txt, size_t len, struct tw_extracted *out)
{
    if (!txt)
        txt = "", len = 0;
    if (len >= 3 && memcmp(txt, "\xEF\xBB\xBF", 3) == 0)
        txt += 3, len -= 3;
    struct tw_extracted tmp;
    tw_extracted_init(&tmp);
    int rc = tw_str_append(&tmp.text, txt, len) ? TW_ENOMEM : 0;
    // The first line that is not blank is the title when it is short and more text follows.
    const char *end = txt + len, *p = txt, *next = end;
    size_t n = 0;
    while (p < end) {
        n = line_at(p, end, &next);
        size_t k = 0;
        while (k < n && (is_html_space(p[k]) || p[k] == '\v'))
            k++;
        if (k < n)
            break;
        p = next;
    }
    bool more = false;
    for (const char *q = p < end ? next : end; q < end && !more; q++)
        more = !is_html_space(*q) && *q != '\v';
    if (!rc && p < end && more && n < TITLE_MAX) {
        if (tw_str_append(&tmp.title, p, n))
            rc = TW_ENOMEM;
        collapse_line(&tmp.title);
    }
    return finish(&tmp, rc, out);
}

// ---- binary sniffing and file kinds

#define SNIFF_BYTES 8192

bool tw_looks_binary(const void *p, size_t len)
{
    const unsigned char *s = p;
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3, len -= 3;
    if (len > SNIFF_BYTES)
        len = SNIFF_BYTES;
    size_t ctrl = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == 0)
            return true;
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f') || c == 0x7F)
            ctrl++;
    }
    return ctrl * 10 > len * 3;
}

// Extensions (lower case) by kind.
static const char *const markdown_ext[] = {
    "md", "markdown", "mdown", "mkd", "mkdn", "mdx", NULL
};
static const char *const html_ext[] = { "html", "htm", "xhtml", NULL };
static const char *const text_ext[] = { "txt", "text", "rst", "adoc", "asciidoc", "org", NULL };
static const char *const image_ext[] = { "png",  "jpg",  "jpeg", "jpe", "jfif", "gif", "webp",
                                         "svg",  "svgz", "ico",  "cur", "bmp",  "tif", "tiff",
                                         "avif", "heic", "heif", "jxl", "apng", "psd", "xcf",
                                         "eps",  "raw",  "cr2",  "nef", "dng",  "tga", NULL };
static const char *const code_ext[] = {
    // C family, CUDA, Objective-C
    "c", "h", "cc", "cpp", "cxx", "c++", "hh", "hpp", "hxx", "h++", "inl", "ipp", "tpp", "cu",
    "cuh", "m", "mm",
    // Python, Ruby, Perl, PHP, Lua, R, Julia, Tcl
    "py", "pyi", "pyx", "pxd", "rb", "rake", "gemspec", "pl", "pm", "php", "lua", "r", "jl", "tcl",
    // JavaScript, TypeScript, front-end frameworks, style sheets
    "js", "mjs", "cjs", "jsx", "ts", "mts", "cts", "tsx", "vue", "svelte", "astro", "css", "scss",
    "sass", "less",
    // JVM, .NET, native languages
    "java", "kt", "kts", "scala", "sc", "groovy", "gradle", "clj", "cljs", "cljc", "edn", "cs",
    "fs", "fsi", "fsx", "vb", "go", "rs", "swift", "dart", "zig", "nim", "d", "cr", "v", "sv",
    "svh", "vhd", "vhdl", "f", "f90", "f95", "f03", "f08", "for", "pas", "pp", "ada", "adb", "ads",
    "asm", "s",
    // functional languages
    "hs", "lhs", "ml", "mli", "elm", "ex", "exs", "erl", "hrl", "lisp", "lsp", "cl", "el", "scm",
    "ss", "rkt", "purs", "idr", "agda", "lean",
    // shells and scripts
    "sh", "bash", "zsh", "fish", "ksh", "csh", "ps1", "psm1", "bat", "cmd", "awk", "sed", "vim",
    // data definitions, queries, build and configuration languages
    "sql", "graphql", "gql", "proto", "thrift", "avdl", "cmake", "mk", "mak", "make", "bzl",
    "bazel", "star", "nix", "tf", "hcl", "toml", "yaml", "yml", "ini", "cfg", "dockerfile",
    "ipynb", "wat", "glsl", "hlsl", "wgsl", "metal", "sol", NULL
};

// Whole names (exact case, as tools spell them) of build and project files.
static const char *const code_names[] = { "Makefile",
                                          "makefile",
                                          "GNUmakefile",
                                          "CMakeLists.txt",
                                          "Dockerfile",
                                          "Containerfile",
                                          "Jenkinsfile",
                                          "Vagrantfile",
                                          "Rakefile",
                                          "Gemfile",
                                          "Podfile",
                                          "Brewfile",
                                          "Procfile",
                                          "Justfile",
                                          "justfile",
                                          "BUILD",
                                          "BUILD.bazel",
                                          "WORKSPACE",
                                          "WORKSPACE.bazel",
                                          "MODULE.bazel",
                                          "Kconfig",
                                          "Kbuild",
                                          "meson.build",
                                          "meson_options.txt",
                                          "meson.options",
                                          "configure.ac",
                                          "configure.in",
                                          "Makefile.am",
                                          "Makefile.in",
                                          "SConstruct",
                                          "SConscript",
                                          "go.mod",
                                          "requirements.txt",
                                          "Pipfile",
                                          "pom.xml",
                                          "build.xml",
                                          "Cargo.toml",
                                          "package.json",
                                          "tsconfig.json",
                                          "setup.cfg",
                                          NULL };

// Whole names of text files without extension (upper case; compared ignoring case).
static const char *const text_names[] = {
    "README", "LICENSE", "LICENCE",      "COPYING", "AUTHORS", "CHANGELOG", "CHANGES",
    "NEWS",   "NOTICE",  "CONTRIBUTING", "HISTORY", "TODO",    "THANKS",    NULL
};

static bool in_list(const char *const *list, const char *s, bool nocase)
{
    for (size_t i = 0; list[i]; i++)
        if (nocase ? strcasecmp(list[i], s) == 0 : strcmp(list[i], s) == 0)
            return true;
    return false;
}

const char *tw_file_kind(const char *name)
{
    if (!name)
        return NULL;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (in_list(code_names, base, false))
        return "code";
    if (strncmp(base, "Dockerfile.", 11) == 0 || strncmp(base, "Makefile.", 9) == 0)
        return "code";
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) // no extension (".profile" is a hidden name, not one)
        return in_list(text_names, base, true) ? "text" : NULL;
    const char *ext = dot + 1;
    if (in_list(markdown_ext, ext, true))
        return "markdown";
    if (in_list(html_ext, ext, true))
        return "html";
    if (in_list(text_ext, ext, true))
        return "text";
    if (in_list(image_ext, ext, true))
        return "image";
    if (in_list(code_ext, ext, true))
        return "code";
    return NULL;
}

int tw_extract_file(const char *kind, const char *data, size_t len, struct tw_extracted *out)
{
    if (!kind || strcmp(kind, "text") == 0)
        return tw_extract_text(data, len, out);
    if (strcmp(kind, "html") == 0)
        return tw_extract_html(data, len, NULL, out);
    if (strcmp(kind, "markdown") == 0)
        return tw_extract_markdown(data, len, out);
    return tw_str_append(&out->text, data, len) ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
}
