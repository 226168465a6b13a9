/* extract.c: main-content extraction from an HTML page: libxml2's HTML parser reports the
 * page through SAX callbacks into a flat event list, boilerplate (navigation, footers,
 * comments, link lists) is left out by tag, class/id hints and text/link density, and the
 * text is written with paragraph breaks.
 *
 * How the main content is found (in the spirit of trafilatura, jusText and readability):
 *  1. While parsing, every element gets its own block text (text not inside a nested
 *     block element), the link text in it, and its subtree's text. Elements that never
 *     hold content (script, style, svg, form controls, ...) are not recorded.
 *  2. A boilerplate hint (a nav/aside/footer/header tag, class/id words like "menu",
 *     "share", "comment", "related", role=navigation, hidden) marks a subtree as bad,
 *     unless it holds more than half of the page's text (a <body class="has-sidebar">).
 *  3. Each block gets a value: + its text for a long block of low link density, - its
 *     text for link lists, - a quarter of it in bad subtrees (they are left out when
 *     written), a little less for short fragments. The container is the element whose
 *     subtree has the largest sum (a maximum-weight subtree: it takes the article, leaves
 *     the menus around it); an element hinted as the article body (itemprop=articleBody,
 *     entry-content, ...) is preferred when it holds most of that prose.
 *  4. The container's events are written: blocks separated by newlines, whitespace
 *     collapsed (kept in <pre>), bad subtrees and link-dense blocks left out, and a
 *     heading or short label whose section held only what was left out taken back.
 * Why SAX and a prescan: building libxml2's tree (a malloc per node and per text, then
 * freeing it) cost as much as tokenizing, and script/style bodies are ~45% of the bytes of
 * real pages, which libxml2 reads character by character only to drop them; the prescan
 * cuts them out with memchr/memmem first, and keeps of each start tag only the attributes
 * read here (unread attributes were another ~28% of the bytes). Nothing recurses and every stack grows on the
 * heap, so depth is bounded only by memory; libxml2 is told XML_PARSE_HUGE for the same
 * reason. */
#define _GNU_SOURCE
#include <ctype.h>
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data_impl.h"

enum { K_INLINE = 0, K_BLOCK = 1, K_DROP = 2, K_HEADING = 3, K_PRE = 4, K_BR = 5 };
/* flags beside the kind: a tag that hints boilerplate (nav, aside, footer, figure and its
 * caption, address; a noscript left open holds the page, the 50% rule keeps it), <header> */
enum { K_MASK = 15, T_BAD = 16, T_HEADER = 32 };

/* Tag kinds by name (lower case, as libxml2 gives them), with T_ flags: DROP is never
 * entered; BLOCK starts a new paragraph. "head" is a block: libxml2 leaves the body's first
 * elements in it when they come early. */
static int tag_kind(const char *n)
{
    switch (n[0]) { /* this runs per element */
    case 'a':
        if (!strcmp(n, "audio"))
            return K_DROP;
        if (!strcmp(n, "article"))
            return K_BLOCK;
        if (!strcmp(n, "aside"))
            return K_BLOCK | T_BAD;
        if (!strcmp(n, "address"))
            return K_BLOCK | T_BAD;
        break;
    case 'b':
        if (!strcmp(n, "button"))
            return K_DROP;
        if (!strcmp(n, "blockquote"))
            return K_BLOCK;
        if (!strcmp(n, "body"))
            return K_BLOCK;
        if (!strcmp(n, "br"))
            return K_BR;
        break;
    case 'c':
        if (!strcmp(n, "canvas"))
            return K_DROP;
        if (!strcmp(n, "center"))
            return K_BLOCK;
        if (!strcmp(n, "caption"))
            return K_BLOCK;
        break;
    case 'd':
        if (!strcmp(n, "dialog"))
            return K_DROP;
        if (!strcmp(n, "div"))
            return K_BLOCK;
        if (!strcmp(n, "dl"))
            return K_BLOCK;
        if (!strcmp(n, "dd"))
            return K_BLOCK;
        if (!strcmp(n, "dt"))
            return K_BLOCK;
        if (!strcmp(n, "details"))
            return K_BLOCK;
        break;
    case 'e':
        if (!strcmp(n, "embed"))
            return K_DROP;
        break;
    case 'f':
        if (!strcmp(n, "frameset"))
            return K_DROP;
        if (!strcmp(n, "footer"))
            return K_BLOCK | T_BAD;
        if (!strcmp(n, "figure"))
            return K_BLOCK | T_BAD;
        if (!strcmp(n, "figcaption"))
            return K_BLOCK | T_BAD;
        if (!strcmp(n, "form"))
            return K_BLOCK;
        if (!strcmp(n, "fieldset"))
            return K_BLOCK;
        break;
    case 'h':
        if (n[1] >= '1' && n[1] <= '6' && !n[2])
            return K_HEADING;
        if (!strcmp(n, "header"))
            return K_BLOCK | T_HEADER;
        if (!strcmp(n, "hr"))
            return K_BLOCK;
        if (!strcmp(n, "html"))
            return K_BLOCK;
        if (!strcmp(n, "head"))
            return K_BLOCK;
        break;
    case 'i':
        if (!strcmp(n, "iframe"))
            return K_DROP;
        if (!strcmp(n, "input"))
            return K_DROP;
        break;
    case 'l':
        if (!strcmp(n, "link"))
            return K_DROP;
        if (!strcmp(n, "li"))
            return K_BLOCK;
        if (!strcmp(n, "legend"))
            return K_BLOCK;
        break;
    case 'm':
        if (!strcmp(n, "math"))
            return K_DROP;
        if (!strcmp(n, "map"))
            return K_DROP;
        if (!strcmp(n, "menu"))
            return K_DROP;
        if (!strcmp(n, "meta"))
            return K_DROP;
        if (!strcmp(n, "main"))
            return K_BLOCK;
        break;
    case 'n':
        if (!strcmp(n, "nav"))
            return K_BLOCK | T_BAD;
        if (!strcmp(n, "noscript"))
            return K_BLOCK | T_BAD;
        break;
    case 'o':
        if (!strcmp(n, "object"))
            return K_DROP;
        if (!strcmp(n, "option"))
            return K_DROP;
        if (!strcmp(n, "ol"))
            return K_BLOCK;
        break;
    case 'p':
        if (!strcmp(n, "p"))
            return K_BLOCK;
        if (!strcmp(n, "pre"))
            return K_PRE;
        break;
    case 's':
        if (!strcmp(n, "script"))
            return K_DROP;
        if (!strcmp(n, "style"))
            return K_DROP;
        if (!strcmp(n, "svg"))
            return K_DROP;
        if (!strcmp(n, "select"))
            return K_DROP;
        if (!strcmp(n, "section"))
            return K_BLOCK;
        if (!strcmp(n, "summary"))
            return K_BLOCK;
        break;
    case 't':
        if (!strcmp(n, "template"))
            return K_DROP;
        if (!strcmp(n, "textarea"))
            return K_DROP;
        if (!strcmp(n, "title"))
            return K_DROP;
        if (!strcmp(n, "tr"))
            return K_BLOCK;
        if (!strcmp(n, "td"))
            return K_BLOCK;
        if (!strcmp(n, "th"))
            return K_BLOCK;
        if (!strcmp(n, "table"))
            return K_BLOCK;
        if (!strcmp(n, "tbody"))
            return K_BLOCK;
        if (!strcmp(n, "thead"))
            return K_BLOCK;
        if (!strcmp(n, "tfoot"))
            return K_BLOCK;
        break;
    case 'u':
        if (!strcmp(n, "ul"))
            return K_BLOCK;
        break;
    case 'v':
        if (!strcmp(n, "video"))
            return K_DROP;
        break;
    default: break;
    }
    return K_INLINE;
}

/* Words of a class/id value (matched whole, after splitting on anything that is not a
 * letter or digit): W_BAD marks boilerplate; W_OK a layout wrapper rather than boilerplate,
 * whatever else it says ("with-sidebar-right", "article-content sticky-sidebar": readability's
 * okMaybeItsACandidate). */
enum { W_BAD = 1, W_OK = 2, W_LEAD = 4, W_STATE = 8, W_STRONG = 16 };
typedef struct word_flag {
    const char *w;
    int flags;
} word_flag;

static int word_cmp(const void *key, const void *ent)
{
    const word_flag *k = key, *e = ent;
    return strcmp(k->w, e->w);
}

static int word_flags(const char *w, size_t n)
{
    static const word_flag words[] = {/* sorted by strcmp: looked up by bsearch */
                                      {"ad", W_BAD},
                                      {"ads", W_BAD},
                                      {"advert", W_BAD | W_STRONG},
                                      {"advertisement", W_BAD | W_STRONG},
                                      {"article", W_OK},
                                      {"author", W_BAD},
                                      {"authorbox", W_BAD},
                                      {"banner", W_BAD},
                                      {"bio", W_BAD},
                                      {"blog", W_OK},
                                      {"body", W_OK},
                                      {"breadcrumb", W_BAD},
                                      {"breadcrumbs", W_BAD},
                                      {"byline", W_BAD},
                                      {"caption", W_BAD},
                                      {"col", W_OK},
                                      {"column", W_OK},
                                      {"comment", W_BAD | W_LEAD | W_STRONG},
                                      {"comments", W_BAD | W_STRONG},
                                      {"consent", W_BAD | W_STRONG},
                                      {"container", W_OK},
                                      {"content", W_OK},
                                      {"cookie", W_BAD | W_STRONG},
                                      {"cookies", W_BAD | W_STRONG},
                                      {"copyright", W_BAD},
                                      {"credit", W_BAD},
                                      {"credits", W_BAD},
                                      {"dateline", W_BAD},
                                      {"dialog", W_BAD | W_STRONG},
                                      {"disqus", W_BAD | W_STRONG},
                                      {"dropdown", W_BAD},
                                      {"entry", W_OK},
                                      {"footer", W_BAD},
                                      {"gdpr", W_BAD | W_STRONG},
                                      {"has", W_STATE},
                                      {"infobox", W_BAD},
                                      {"keywords", W_BAD},
                                      {"layout", W_OK},
                                      {"legend", W_BAD},
                                      {"lightbox", W_BAD | W_STRONG},
                                      {"login", W_BAD | W_STRONG},
                                      {"main", W_OK},
                                      {"masthead", W_BAD},
                                      {"menu", W_BAD},
                                      {"menubar", W_BAD},
                                      {"metadata", W_BAD},
                                      {"modal", W_BAD | W_STRONG},
                                      {"nav", W_BAD},
                                      {"navbar", W_BAD},
                                      {"navigation", W_BAD},
                                      {"newsletter", W_BAD | W_STRONG},
                                      {"newsticker", W_BAD},
                                      {"offcanvas", W_BAD},
                                      {"outbrain", W_BAD | W_STRONG},
                                      {"overlay", W_BAD | W_STRONG},
                                      {"page", W_OK},
                                      {"pager", W_BAD},
                                      {"pagination", W_BAD},
                                      {"paywall", W_BAD | W_STRONG},
                                      {"popup", W_BAD | W_STRONG},
                                      {"post", W_OK},
                                      {"postmetadata", W_BAD},
                                      {"promo", W_BAD},
                                      {"promotion", W_BAD},
                                      {"rate", W_BAD},
                                      {"rating", W_BAD},
                                      {"readmore", W_BAD},
                                      {"recirculation", W_BAD},
                                      {"recommended", W_BAD},
                                      {"related", W_BAD},
                                      {"relatedposts", W_BAD},
                                      {"screenreader", W_BAD},
                                      {"share", W_BAD | W_STRONG},
                                      {"shariff", W_BAD | W_STRONG},
                                      {"sharing", W_BAD | W_STRONG},
                                      {"sidebar", W_BAD},
                                      {"signup", W_BAD | W_STRONG},
                                      {"single", W_OK},
                                      {"site", W_OK},
                                      {"skip", W_BAD},
                                      {"social", W_BAD | W_STRONG},
                                      {"socialmedia", W_BAD | W_STRONG},
                                      {"sponsor", W_BAD | W_STRONG},
                                      {"sponsored", W_BAD | W_STRONG},
                                      {"sr", W_BAD},
                                      {"story", W_OK},
                                      {"subscribe", W_BAD | W_STRONG},
                                      {"subscription", W_BAD | W_STRONG},
                                      {"taboola", W_BAD | W_STRONG},
                                      {"tagcloud", W_BAD},
                                      {"tags", W_BAD},
                                      {"teaser", W_BAD},
                                      {"teaserlist", W_BAD},
                                      {"template", W_OK},
                                      {"text", W_OK},
                                      {"themes", W_BAD},
                                      {"toolbar", W_BAD},
                                      {"topbar", W_BAD},
                                      {"topics", W_BAD},
                                      {"tweet", W_BAD},
                                      {"twitter", W_BAD},
                                      {"widget", W_BAD},
                                      {"widgets", W_BAD},
                                      {"with", W_STATE},
                                      {"without", W_STATE},
                                      {"wrapper", W_OK}};
    char buf[24];
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, w, n);
    buf[n] = 0;
    word_flag key = {buf, 0};
    const word_flag *f = bsearch(&key, words, sizeof words / sizeof words[0], sizeof words[0], word_cmp);
    return f ? f->flags : 0;
}

static bool ends_with(const char *w, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && !memcmp(w + n - k, suf, k);
}

static bool content_hint(const char *v)
{
    static const char *const pats[] = {"articlebody",     "article-body",     "article_body",    "article__body",
                                       "article-content", "article__content", "entry-content",   "post-content",
                                       "post-body",       "postbody",         "story-body",      "storybody",
                                       "article-text",    "articletext",      "td-post-content", "single-content"};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        if (strstr(v, pats[i]))
            return true;
    return false;
}

/* Hints of a lower-cased class/id value. Boilerplate when one of its words is a bad word,
 * unless a layout word is there too; a bad word after "__" (a BEM element: "article__tags")
 * counts even then, as it names the part, not the block around it. The article-body
 * patterns are only looked for when a word ends in body/content/text. */
static void class_hints(const char *v, uint8_t *bad_out, uint8_t *content_out)
{
    size_t i = 0;
    bool bad = false, ok = false, bem_bad = false, maybe_content = false, prev_state = false, strong = false;
    bool tok_ok = false, tok_strong = false, part = false; /* in the current class; a strong part of an ok one */
    while (v[i]) {
        bool new_class = i == 0;
        while (v[i] && !isalnum((unsigned char)v[i]))
            new_class |= isspace((unsigned char)v[i++]) != 0;
        size_t s = i;
        while (isalnum((unsigned char)v[i]))
            i++;
        if (i == s)
            continue;
        if (new_class)
            tok_ok = tok_strong = false;
        int f = word_flags(v + s, i - s);
        if ((f & W_LEAD) && s > 0 && !isspace((unsigned char)v[s - 1]))
            f = 0; /* "comment" starts a class ("comment-list"); in a compound it is an entry of
                    * something else ("live-match-comment": a live ticker); "comments" counts
                    * anywhere ("fb-comments", "entry-comments") */
        if (f & W_BAD && prev_state)
            f = 0; /* "with-navigation", "no-sidebars", "has-sidebar": a state of the layout */
        prev_state = (f & W_STATE) && v[i] && !isspace((unsigned char)v[i]);
        if (i - s == 2 && !strncmp(v + s, "no", 2) && v[i] && !isspace((unsigned char)v[i]))
            prev_state = true;
        if (f & W_BAD) {
            strong |= (f & W_STRONG) != 0;
            tok_strong |= (f & W_STRONG) != 0;
            if (s >= 2 && v[s - 1] == '_' && v[s - 2] == '_')
                bem_bad = true;
            bad = true;
        } else if (f & W_OK) {
            ok = true;
            tok_ok = true;
        }
        part |= tok_ok && tok_strong;
        maybe_content |=
            ends_with(v + s, i - s, "body") || ends_with(v + s, i - s, "content") || ends_with(v + s, i - s, "text");
    }
    /* A layout word elsewhere in the value vetoes a bad word ("box article modal-enabled",
     * "article paywall-on"), but not a strong one in the same class: "entry-comments",
     * "post-share" name a part of the article that is not its text. */
    if (bem_bad || part || (bad && !ok))
        *bad_out = strong ? 2 : 1;
    if (maybe_content && content_hint(v))
        *content_out = 1;
}

enum { N_OTHER = 0, N_A, N_MAIN, N_ARTICLE, N_HEAD };

/* Per element, in document order; element 0 is a root around the whole page. */
typedef struct elem {
    uint32_t parent;   /* index of the parent element, UINT32_MAX for the root */
    uint32_t own;      /* bytes of text in this block (not in nested blocks), blocks only */
    uint32_t own_link; /* of which inside <a> */
    uint32_t ev0, ev1; /* its start and end events */
    uint64_t total;    /* bytes of text in the subtree */
    double sum;        /* block values of the subtree */
    double pos;        /* positive block values of the subtree (prose) */
    double raw;        /* the same, hints not counted */
    uint8_t kind, hint_bad, hint_content, bad, name;
} elem;

enum { EV_START = 0, EV_END = 1, EV_TEXT = 2 };
typedef struct event {
    uint32_t type : 2, elem : 30; /* the element; for text, its block owner */
    uint32_t off, len;            /* text: bytes in ex.txt */
} event;

typedef struct ex {
    elem *e;
    size_t n, cap;
    event *ev;
    size_t n_ev, cap_ev;
    uint32_t *stack; /* open elements */
    size_t depth, cap_stack;
    uint32_t *owners; /* open block elements (text owners) */
    size_t n_own, cap_own;
    sbuf txt;    /* all text of recorded elements, as parsed */
    sbuf title;  /* the first <title> in <head>, as parsed */
    size_t skip; /* > 0 inside an element that is not recorded (its depth) */
    int in_link, in_title, have_title;
    fg_status st;
    htmlParserCtxtPtr ctx;
    sbuf out;
    bool space, nl; /* pending space / block break in the output */
} ex;

static fg_status grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return FG_OK;
    size_t nc = *cap ? 2 * *cap : 1024;
    while (nc < need)
        nc *= 2;
    void *q = fg_realloc(*p, nc * size);
    if (!q)
        return FG_ERR_NOMEM;
    *p = q;
    *cap = nc;
    return FG_OK;
}

static void fail(ex *x)
{
    x->st = FG_ERR_NOMEM;
    xmlStopParser(x->ctx);
}

static bool push_u32(ex *x, uint32_t **a, size_t *n, size_t *cap, uint32_t v)
{
    if (grow((void **)a, cap, *n + 1, sizeof **a) != FG_OK) {
        fail(x);
        return false;
    }
    (*a)[(*n)++] = v;
    return true;
}

static bool push_event(ex *x, int type, uint32_t el, uint32_t off, uint32_t len)
{
    if (grow((void **)&x->ev, &x->cap_ev, x->n_ev + 1, sizeof *x->ev) != FG_OK) {
        fail(x);
        return false;
    }
    event *v = &x->ev[x->n_ev++];
    v->type = (uint32_t)type;
    v->elem = el;
    v->off = off;
    v->len = len;
    return true;
}

/* Lower-cased copy of an attribute value (truncated to cap-1 bytes). */
static const char *lc(const xmlChar *s, char *buf, size_t cap)
{
    size_t k = 0;
    for (; s && *s && k < cap - 1; s++)
        buf[k++] = (char)tolower(*s);
    buf[k] = 0;
    return buf;
}

/* Hints from attributes (name/value pairs, libxml2 gives names lower-cased): boilerplate,
 * article body, hidden. */
static void read_hints(const xmlChar **atts, elem *e)
{
    char v[256];
    for (; atts && atts[0]; atts += 2) {
        const char *an = (const char *)atts[0];
        const xmlChar *av = atts[1];
        if (!strcmp(an, "class") || !strcmp(an, "id")) {
            class_hints(lc(av, v, sizeof v), &e->hint_bad, &e->hint_content);
        } else if (!strcmp(an, "itemprop")) {
            if (strstr(lc(av, v, sizeof v), "articlebody"))
                e->hint_content = 1;
        } else if (!strcmp(an, "role")) {
            lc(av, v, sizeof v);
            if (!strcmp(v, "navigation") || !strcmp(v, "banner") || !strcmp(v, "contentinfo") ||
                !strcmp(v, "complementary") || !strcmp(v, "menu") || !strcmp(v, "dialog"))
                e->hint_bad = 1;
        } else if (!strcmp(an, "hidden")) {
            e->hint_bad = 1;
        } else if (!strcmp(an, "aria-hidden")) {
            if (!strcmp(lc(av, v, sizeof v), "true"))
                e->hint_bad = 1;
        } else if (!strcmp(an, "style")) {
            lc(av, v, sizeof v);
            char *d = strstr(v, "display");
            if ((d && strstr(d, "none")) || strstr(v, "visibility:hidden") || strstr(v, "visibility: hidden"))
                e->hint_bad = 1;
        }
    }
}

static uint32_t nonspace_bytes(const xmlChar *s, int len)
{
    uint32_t k = 0;
    for (int i = 0; i < len; i++)
        k += !(s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r' || s[i] == '\f');
    return k;
}

/* Whether element i or one of its 32 nearest ancestors is an <article> or <main>. */
static bool in_article(const ex *x, uint32_t i)
{
    for (int k = 0; k < 32 && i != UINT32_MAX; k++, i = x->e[i].parent)
        if (x->e[i].name == N_ARTICLE || x->e[i].name == N_MAIN)
            return true;
    return false;
}

static bool is_owner(int kind)
{
    return kind != K_INLINE && kind != K_BR;
}

static void on_start(void *u, const xmlChar *tag, const xmlChar **atts)
{
    ex *x = ((htmlParserCtxtPtr)u)->_private;
    if (x->st != FG_OK)
        return;
    if (x->skip) {
        x->skip++;
        return;
    }
    const char *name = (const char *)tag;
    int tk = tag_kind(name), kind = tk & K_MASK;
    uint32_t cur = x->stack[x->depth - 1];
    if (kind == K_DROP) {
        x->skip = 1;
        if (!x->have_title && x->e[cur].name == N_HEAD && !strcmp(name, "title"))
            x->in_title = 1;
        return;
    }
    if (grow((void **)&x->e, &x->cap, x->n + 1, sizeof *x->e) != FG_OK) {
        fail(x);
        return;
    }
    uint32_t i = (uint32_t)x->n++;
    elem *e = &x->e[i];
    memset(e, 0, sizeof *e);
    e->parent = cur;
    e->kind = (uint8_t)kind;
    e->ev0 = (uint32_t)x->n_ev;
    switch (name[0]) {
    case 'a': e->name = !name[1] ? N_A : !strcmp(name, "article") ? N_ARTICLE : N_OTHER; break;
    case 'm': e->name = !strcmp(name, "main") ? N_MAIN : N_OTHER; break;
    case 'h': e->name = !strcmp(name, "head") ? N_HEAD : N_OTHER; break;
    default: break;
    }
    read_hints(atts, e);
    if ((tk & T_HEADER) && !in_article(x, cur))
        e->hint_bad = 1; /* a page header; an <article>'s own header holds its title */
    if (tk & T_BAD)
        e->hint_bad = 1;
    if (e->name == N_ARTICLE && !e->hint_bad)
        e->hint_content = 0; /* several <article>s are a list; the sum decides */
    if (!push_event(x, EV_START, i, 0, 0) || !push_u32(x, &x->stack, &x->depth, &x->cap_stack, i))
        return;
    if (is_owner(kind) && !push_u32(x, &x->owners, &x->n_own, &x->cap_own, i))
        return;
    x->in_link += e->name == N_A;
}

static void on_end(void *u, const xmlChar *tag)
{
    (void)tag; /* libxml2 ends elements in its own (balanced) order */
    ex *x = ((htmlParserCtxtPtr)u)->_private;
    if (x->st != FG_OK)
        return;
    if (x->skip) {
        if (--x->skip == 0 && x->in_title) {
            x->in_title = 0;
            x->have_title = 1;
        }
        return;
    }
    if (x->depth <= 1) /* the root stays open */
        return;
    uint32_t i = x->stack[--x->depth];
    elem *e = &x->e[i];
    e->ev1 = (uint32_t)x->n_ev;
    if (!push_event(x, EV_END, i, 0, 0))
        return;
    if (is_owner(e->kind))
        x->n_own--;
    x->in_link -= e->name == N_A;
    x->e[e->parent].total += e->total;
}

static void on_text(void *u, const xmlChar *s, int len)
{
    ex *x = ((htmlParserCtxtPtr)u)->_private;
    if (x->st != FG_OK || len <= 0)
        return;
    if (x->skip) {
        if (x->in_title && x->skip == 1 && sbuf_put(&x->title, s, (size_t)len) != FG_OK)
            fail(x);
        return;
    }
    uint32_t k = nonspace_bytes(s, len);
    uint32_t o = x->owners[x->n_own - 1];
    elem *oe = &x->e[o];
    oe->own += k;
    if (x->in_link)
        oe->own_link += k;
    x->e[x->stack[x->depth - 1]].total += k;
    if (x->txt.n + (size_t)len > UINT32_MAX) /* the parser's input is under 2 GiB; this is a guard */
        return;
    uint32_t off = (uint32_t)x->txt.n;
    if (sbuf_put(&x->txt, s, (size_t)len) != FG_OK) {
        fail(x);
        return;
    }
    event *last = x->n_ev ? &x->ev[x->n_ev - 1] : NULL;
    if (last && last->type == EV_TEXT && last->elem == o && last->off + last->len == off)
        last->len += (uint32_t)len; /* libxml2 splits text at entities */
    else
        push_event(x, EV_TEXT, o, off, (uint32_t)len);
}

/* Not whitespace, not a letter or digit or one of ":_.-": where libxml2 ends a tag name. */
static bool name_end(char c)
{
    return !(isalnum((unsigned char)c) || c == ':' || c == '_' || c == '.' || c == '-');
}

/* Index just past the '>' of the start tag at h[i] == '<' (or n): quoted attribute values
 * (a quote right after '=' and blanks, as libxml2 reads them) may hold '>' and '<'. */
static size_t tag_end(const char *h, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        char c = h[i];
        if (c == '>')
            return i + 1;
        if (c == '=') {
            size_t j = i + 1;
            while (j < n && (h[j] == ' ' || h[j] == '\t' || h[j] == '\n' || h[j] == '\r'))
                j++;
            if (j < n && (h[j] == '"' || h[j] == '\'')) {
                const char *q = memchr(h + j + 1, h[j], n - j - 1);
                if (!q)
                    return n;
                i = (size_t)(q - h);
            } else {
                i = j - 1;
            }
        }
    }
    return n;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool attr_name_char(char c)
{
    return isalnum((unsigned char)c) || c == ':' || c == '-' || c == '_' || c == '.';
}

/* The attributes read_hints looks at; the parser is given no other. */
static bool kept_attr(const char *a, size_t n)
{
    static const char *const keep[] = {"class", "id", "role", "style", "hidden", "aria-hidden", "itemprop"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (strlen(keep[i]) == n && !strncasecmp(a, keep[i], n))
            return true;
    return false;
}

/* Writes the start tag h[i..end) (h[i] == '<', end from tag_end) to o + *k with only the
 * kept attributes, and returns end. Attributes are read as libxml2 reads them
 * (htmlParseStartTag: a name of letters, digits and ":-_." under 100 bytes, blanks, '=',
 * blanks, a quoted value or one up to a blank or '>'); from the first thing it would
 * read some other way (a bogus name, an unclosed quote) the tag is copied as it is. Start
 * tags are ~40% of a page's bytes and libxml2 reads each value byte by byte into a malloc'd
 * copy. */
static size_t copy_start_tag(const char *h, size_t end, size_t i, char *o, size_t *k)
{
    size_t p = i + 1;
    while (p < end && attr_name_char(h[p]))
        p++;
    if (p - i - 1 >= 100)
        p = i;
    memcpy(o + *k, h + i, p - i);
    *k += p - i;
    /* An attribute is left out with the blanks before it. What follows must bind as it
     * did: a name after a dropped one gets a space ("hidden data-x=\"y\"text"), and junk
     * that libxml2 would read its own way comes with the dropped attribute before it
     * ("<div x= 'q'-->", "enough  =\"x>y\""); each space is paid for by dropped bytes, so
     * the copy is never longer than the page. */
    bool dropped = false, dropped2 = false; /* the last attribute, the one before it */
    size_t last_ws = p, last_a = p;
    bool bogus = false;
    while (p > i) {
        size_t ws = p;
        while (p < end && blank(h[p]))
            p++;
        if (p >= end || h[p] == '>' || (h[p] == '/' && p + 1 < end && h[p + 1] == '>')) {
            p = ws; /* "id=main />" is not "id=main/>" */
            break;
        }
        bogus = true;
        if (!(isalpha((unsigned char)h[p]) || h[p] == '_' || h[p] == ':' || h[p] == '.')) {
            p = ws;
            break;
        }
        size_t a = p;
        while (p < end && attr_name_char(h[p]))
            p++;
        if (p - a >= 100) {
            p = ws;
            break;
        }
        size_t e = p, q = p;
        while (q < end && blank(h[q]))
            q++;
        if (q < end && h[q] == '=') {
            q++;
            while (q < end && blank(h[q]))
                q++;
            if (q < end && (h[q] == '"' || h[q] == '\'')) {
                const char *z = memchr(h + q + 1, h[q], end - q - 1);
                if (!z) {
                    p = ws;
                    break;
                }
                q = (size_t)(z - h) + 1;
            } else {
                while (q < end && !blank(h[q]) && h[q] != '>')
                    q++;
            }
            e = q;
        }
        bogus = false;
        if (kept_attr(h + a, p - a)) {
            if (dropped && ws == a)
                o[(*k)++] = ' ';
            memcpy(o + *k, h + ws, e - ws);
            *k += e - ws;
            dropped = false;
        } else {
            dropped2 = dropped;
            dropped = true;
            last_ws = ws;
            last_a = a;
        }
        p = e;
    }
    if (bogus && dropped) {
        if (dropped2 && last_ws == last_a)
            o[(*k)++] = ' ';
        p = last_ws;
    } else if (dropped && p < end && !blank(h[p])) {
        o[(*k)++] = ' '; /* "aria-hidden=true data-x=\"1\"/>" is not "aria-hidden=true/>" */
    }
    memcpy(o + *k, h + p, end - p);
    *k += end - p;
    return end;
}

/* The parser's copy of the page: NUL bytes as spaces (libxml2 stops at one), without
 * comments and without the bodies of <script> and <style>, which end where libxml2 ends
 * them ("</" and the name, any case). Other tags are stepped over whole (their quoted
 * values may hold "<script"); an end tag to its first '>' as libxml2 does. */
static char *prescan(const char *h, size_t n, size_t *out_n)
{
    char *o = fg_malloc(n + 1), *nul = NULL;
    if (!o)
        return NULL;
    if (memchr(h, 0, n)) { /* spaces first, so that tags are read as libxml2 will read them */
        nul = fg_malloc(n);
        if (!nul) {
            fg_free(o);
            return NULL;
        }
        for (size_t q = 0; q < n; q++)
            nul[q] = h[q] ? h[q] : ' ';
        h = nul;
    }
    size_t i = 0, k = 0;
    while (i < n) {
        const char *lt = memchr(h + i, '<', n - i);
        size_t j = lt ? (size_t)(lt - h) : n;
        memcpy(o + k, h + i, j - i);
        k += j - i;
        i = j;
        if (i + 1 >= n) {
            if (i < n)
                o[k++] = h[i++];
            break;
        }
        char c = h[i + 1];
        if (c == '!' && i + 3 < n && h[i + 2] == '-' && h[i + 3] == '-') {
            const char *e = memmem(h + i + 4, n - i - 4, "-->", 3);
            if (e) {
                i = (size_t)(e - h) + 3;
                continue;
            }
            j = n; /* unclosed: libxml2 decides */
        } else if (c == '/') {
            const char *e = memchr(h + i, '>', n - i);
            j = e ? (size_t)(e - h) + 1 : n;
        } else if (isalpha((unsigned char)c)) {
            j = tag_end(h, n, i);
            size_t nl = 0;
            if ((c | 0x20) == 's' && i + 7 < n) {
                if (!strncasecmp(h + i + 1, "script", 6) && name_end(h[i + 7]))
                    nl = 6;
                else if (!strncasecmp(h + i + 1, "style", 5) && name_end(h[i + 6]))
                    nl = 5;
            }
            if (nl && !(j >= i + 2 && j <= n && h[j - 1] == '>' && h[j - 2] == '/')) { /* <script/> is closed */
                memcpy(o + k, h + i, j - i);
                k += j - i;
                size_t s = j;
                i = n;
                while (s + 2 + nl <= n) {
                    const char *e = memmem(h + s, n - s, "</", 2);
                    if (!e || (size_t)(e - h) + 2 + nl > n)
                        break;
                    if (!strncasecmp(e + 2, nl == 6 ? "script" : "style", nl)) {
                        i = (size_t)(e - h);
                        break;
                    }
                    s = (size_t)(e - h) + 2;
                }
                continue;
            }
            if (!nl) {
                i = copy_start_tag(h, j, i, o, &k);
                continue;
            }
        } else {
            j = i + 1;
        }
        memcpy(o + k, h + i, j - i);
        k += j - i;
        i = j;
    }
    fg_free(nul);
    o[k] = 0;
    *out_n = k;
    return o;
}

/* Value of one block: + text for prose, - for link lists, boilerplate and fragments. The
 * weights were set on half of trafilatura's evaluation pages and checked on the other
 * half (docs/perf/extract.md). */
static double block_value(const elem *e)
{
    if (e->own == 0 || e->kind == K_INLINE)
        return 0;
    double t = e->own, ld = (double)e->own_link / t;
    if (e->bad) /* left out when written, so it costs less than text that would be written */
        return -0.25 * t;
    if (ld > 0.5)
        return -t;
    if (e->kind == K_HEADING)
        return 0;
    if (t < 40)
        return -0.3 * t - e->own_link;
    return t * (1 - 2 * ld);
}

/* Chooses the container: index of the element with the largest subtree value. */
static uint32_t choose(ex *x)
{
    if (x->n == 0)
        return UINT32_MAX;
    for (size_t i = x->n; i-- > 0;) { /* children before parents; no element is bad yet */
        elem *e = &x->e[i];
        double v = block_value(e);
        e->raw += v > 0 ? v : 0;
        if (e->parent != UINT32_MAX)
            x->e[e->parent].raw += e->raw;
    }
    /* A hint does not hold for an element with most of the page's text or prose: the
     * hints of a layout ("zen-one-sidebar-second", <body class="has-sidebar">), not of a
     * part; what a strong word names (comments, cookie notices, ads, sharing) stays out
     * whatever its size. */
    double page = (double)x->e[0].total, prose = x->e[0].raw;
    for (size_t i = 0; i < x->n; i++) { /* parents come before children */
        elem *e = &x->e[i];
        bool pbad = e->parent != UINT32_MAX && x->e[e->parent].bad;
        e->bad = pbad || (e->hint_bad && (double)e->total < 0.5 * page && (e->hint_bad == 2 || e->raw <= 0.5 * prose));
    }
    for (size_t i = x->n; i-- > 0;) { /* children before parents */
        elem *e = &x->e[i];
        if (e->kind == K_DROP)
            continue;
        double v = block_value(e);
        e->sum += v;
        e->pos += v > 0 ? v : 0;
        if (e->parent != UINT32_MAX) {
            x->e[e->parent].sum += e->sum;
            x->e[e->parent].pos += e->pos;
        }
    }
    uint32_t best = 0;
    for (size_t i = 1; i < x->n; i++)
        if (x->e[i].kind != K_DROP && x->e[i].sum > x->e[best].sum)
            best = (uint32_t)i;
    if (x->e[best].sum <= 0)
        return 0; /* no prose anywhere: the whole page, boilerplate left out */
    /* The best subtree can stop short of the article when an ad or a link box sits between
     * its paragraphs: go up while the parent adds CLIMB_GAIN more prose for a sum still
     * above CLIMB_KEEP of the best (what comes with it is filtered block by block). */
    const double CLIMB_GAIN = 1.15, CLIMB_KEEP = 0.6;
    double best_sum = x->e[best].sum;
    while (x->e[best].parent != UINT32_MAX) {
        const elem *pa = &x->e[x->e[best].parent];
        if (pa->bad || pa->pos < CLIMB_GAIN * x->e[best].pos || pa->sum < CLIMB_KEEP * best_sum)
            break;
        best = x->e[best].parent;
    }
    /* An element marked as the article body wins when it holds most of the best value:
     * it is the publisher's own answer, and it leaves out what lies beside it. */
    uint32_t hinted = UINT32_MAX;
    for (size_t i = 0; i < x->n; i++)
        if (x->e[i].hint_content && !x->e[i].bad && x->e[i].pos > 0.5 * x->e[best].pos &&
            (hinted == UINT32_MAX || x->e[i].pos > x->e[hinted].pos))
            hinted = (uint32_t)i;
    if (hinted != UINT32_MAX)
        return hinted;
    /* A best subtree outside the page's <main> (or its one <article>) that is only a
     * modal or a side text: the <main> wins when it holds at least half as much prose. */
    uint32_t m = UINT32_MAX, n_article = 0, art = UINT32_MAX;
    for (size_t i = 0; i < x->n; i++) {
        int nm = x->e[i].name;
        if (x->e[i].kind == K_DROP || x->e[i].bad)
            continue;
        if (nm == N_MAIN && (m == UINT32_MAX || x->e[i].pos > x->e[m].pos))
            m = (uint32_t)i;
        if (nm == N_ARTICLE && x->e[i].pos > 0) {
            n_article++;
            art = (uint32_t)i;
        }
    }
    if (m == UINT32_MAX && n_article == 1)
        m = art;
    if (m != UINT32_MAX && x->e[m].pos >= 0.5 * x->e[best].pos) {
        uint32_t k = best;
        while (k != UINT32_MAX && k != m)
            k = x->e[k].parent;
        bool inside = k == m; /* best lies in main: keep best */
        k = m;
        while (k != UINT32_MAX && k != best)
            k = x->e[k].parent;
        if (!inside && k != best) /* neither contains the other */
            return m;
    }
    return best;
}

static void out_break(ex *x)
{
    if (x->out.n)
        x->nl = true;
    x->space = false;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f';
}

static fg_status out_text(ex *x, const char *s, size_t len, bool pre)
{
    const char *p = s, *end = s + len;
    while (p < end) {
        if (!pre && is_space((unsigned char)*p)) {
            x->space = true;
            p++;
            continue;
        }
        const char *q = p;
        if (pre)
            q = end;
        else
            while (q < end && !is_space((unsigned char)*q))
                q++;
        if (x->nl) {
            if (sbuf_put(&x->out, "\n", 1) != FG_OK)
                return FG_ERR_NOMEM;
            x->nl = x->space = false;
        } else if (x->space) {
            if (x->out.n && sbuf_put(&x->out, " ", 1) != FG_OK)
                return FG_ERR_NOMEM;
            x->space = false;
        }
        if (sbuf_put(&x->out, p, (size_t)(q - p)) != FG_OK)
            return FG_ERR_NOMEM;
        p = q;
    }
    return FG_OK;
}

/* A heading or a short label waits to be kept until text is written after it: one whose
 * section (up to its parent's end or the next heading) had only what is left out ("Mehr
 * zum Thema" over a link list), or a heading that ends the container, is taken back, as
 * jusText classifies a heading by the blocks that follow it. A label followed by another
 * label is kept (a list of short items: ingredients, scores). */
typedef struct heading {
    bool pending, in, skipped; /* waiting; inside it; something left out since it */
    bool heading;              /* a heading, not a short label */
    uint32_t parent;
    size_t pos; /* output length before it */
} heading;

/* A heading, or a short label block ("Veja também:", "Tags") of plain text. */
static bool is_label(const elem *e)
{
    return e->kind == K_HEADING || (e->kind == K_BLOCK && e->own && e->own < 40 && !e->own_link && e->total == e->own);
}

static void heading_drop(ex *x, heading *h)
{
    if (h->pending) {
        x->out.n = h->pos;
        if (x->out.p)
            x->out.p[x->out.n] = 0;
        x->nl = x->out.n > 0;
        x->space = false;
    }
    h->pending = false;
}

/* Writes the text of container c: its events, bad subtrees and link-dense blocks left out. */
static fg_status write_text(ex *x, uint32_t c)
{
    int pre = 0;
    heading h = {0};
    for (size_t j = x->e[c].ev0; j <= x->e[c].ev1 && j < x->n_ev; j++) {
        const event *v = &x->ev[j];
        const elem *e = &x->e[v->elem];
        switch (v->type) {
        case EV_START:
            if (e->bad && v->elem != c) {
                j = e->ev1;
                h.skipped = true;
                break;
            }
            if (is_label(e) && v->elem != c) {
                if (h.pending && h.skipped)
                    heading_drop(x, &h);
                if (!h.pending || !h.heading || e->kind != K_HEADING) /* a title and a subtitle wait together */
                    h = (heading){
                        .pending = true, .parent = e->parent, .pos = x->out.n, .heading = e->kind == K_HEADING};
                h.in = true;
            }
            if (e->kind == K_BR) {
                out_break(x);
            } else if (e->kind != K_INLINE) {
                out_break(x);
                pre += e->kind == K_PRE;
            }
            break;
        case EV_END:
            if (is_label(e))
                h.in = false;
            else if (h.pending && v->elem == h.parent && h.skipped)
                heading_drop(x, &h);
            if (is_owner(e->kind)) {
                pre -= e->kind == K_PRE;
                out_break(x);
            }
            break;
        default:
            if (e->own && 2 * e->own_link > e->own) { /* a link-dense block */
                h.skipped = true;
                break;
            }
            size_t before = x->out.n;
            if (out_text(x, x->txt.p + v->off, v->len, pre > 0) != FG_OK)
                return FG_ERR_NOMEM;
            if (!h.in && x->out.n > before)
                h.pending = false;
        }
    }
    if (h.heading || h.skipped) /* a short line that ends the article stays */
        heading_drop(x, &h);
    return FG_OK;
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;
static void xml_init(void)
{
    xmlInitParser();
}

static void ex_free(ex *x)
{
    fg_free(x->e);
    fg_free(x->ev);
    fg_free(x->stack);
    fg_free(x->owners);
    sbuf_free(&x->txt);
    sbuf_free(&x->title);
    sbuf_free(&x->out);
}

fg_status fg_data_html_extract(const char *html, size_t len, fg_data_extracted *res)
{
    memset(res, 0, sizeof *res);
    pthread_once(&xml_once, xml_init);
    if (len > INT32_MAX) {
        res->reject = "extract_failed";
        snprintf(res->detail, sizeof res->detail, "page of %zu bytes is over the parser's 2 GiB limit", len);
        return FG_OK;
    }
    ex x;
    memset(&x, 0, sizeof x);
    size_t plen = 0;
    char *copy = prescan(html, len, &plen);
    htmlParserCtxtPtr ctx = copy ? htmlNewParserCtxt() : NULL;
    if (!ctx) {
        fg_free(copy);
        return fg_error(FG_ERR_NOMEM, "html: out of memory preparing %zu bytes", len);
    }
    /* the root element 0 around the page: libxml2 may report text or elements beside <html> */
    elem root = {.parent = UINT32_MAX, .kind = K_BLOCK};
    fg_status st = grow((void **)&x.e, &x.cap, 1, sizeof *x.e);
    if (st == FG_OK) {
        x.e[x.n++] = root;
        x.st = FG_OK;
        x.ctx = ctx;
        if (!push_u32(&x, &x.stack, &x.depth, &x.cap_stack, 0) || !push_u32(&x, &x.owners, &x.n_own, &x.cap_own, 0) ||
            !push_event(&x, EV_START, 0, 0, 0))
            st = FG_ERR_NOMEM;
    }
    if (st == FG_OK) {
        htmlSAXHandler *sax = (htmlSAXHandler *)ctx->sax;
        memset(sax, 0, sizeof *sax);
        sax->initialized = 1;
        sax->startElement = on_start;
        sax->endElement = on_end;
        sax->characters = on_text;
        sax->ignorableWhitespace = on_text;
        sax->cdataBlock = on_text;
        ctx->_private = &x;
        int opts = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET | XML_PARSE_HUGE |
                   HTML_PARSE_IGNORE_ENC;
        htmlDocPtr doc = htmlCtxtReadMemory(ctx, copy, (int)plen, NULL, "UTF-8", opts);
        if (doc) /* not built with these callbacks; freed if a libxml2 builds one anyway */
            xmlFreeDoc(doc);
        st = x.st;
    }
    fg_free(copy);
    htmlFreeParserCtxt(ctx);
    if (st == FG_OK) {
        x.e[0].ev1 = (uint32_t)x.n_ev;
        for (size_t d = x.depth; d-- > 1;) /* close what libxml2 left open (it should not) */
            x.e[x.e[x.stack[d]].parent].total += x.e[x.stack[d]].total;
        if (!push_event(&x, EV_END, 0, 0, 0))
            st = FG_ERR_NOMEM;
        for (size_t d = x.depth; d-- > 1;)
            x.e[x.stack[d]].ev1 = (uint32_t)x.n_ev - 1;
    }
    if (st == FG_OK && x.title.n) {
        ex t;
        memset(&t, 0, sizeof t);
        st = out_text(&t, x.title.p, x.title.n, false);
        res->title = t.out.p;
    }
    if (st == FG_OK && x.n <= 1) {
        res->reject = "extract_no_html";
        snprintf(res->detail, sizeof res->detail, "no HTML element could be parsed from %zu bytes", len);
    } else if (st == FG_OK) {
        uint32_t c = choose(&x);
        st = write_text(&x, c);
        res->container_chars = x.e[c].total;
        res->page_chars = x.e[0].total;
        if (st == FG_OK) {
            res->text = x.out.p;
            res->len = x.out.n;
            x.out.p = NULL;
            x.out.n = x.out.cap = 0;
            if (res->len == 0) {
                res->reject = "extract_empty";
                snprintf(res->detail, sizeof res->detail, "no main content found (%llu bytes of text in the page)",
                         (unsigned long long)res->page_chars);
            }
        }
    }
    ex_free(&x);
    if (st != FG_OK) {
        fg_data_extracted_free(res);
        return fg_error(st, "html: out of memory extracting %zu bytes", len);
    }
    return FG_OK;
}

void fg_data_extracted_free(fg_data_extracted *r)
{
    if (!r)
        return;
    fg_free(r->text);
    fg_free(r->title);
    r->text = r->title = NULL;
    r->len = 0;
}
