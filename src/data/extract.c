/* extract.c: main-content extraction from an HTML page: libxml2's HTML parser builds the
 * DOM, then boilerplate (navigation, footers, comments, link lists) is left out by tag,
 * class/id hints and text/link density, and the text is written with paragraph breaks.
 *
 * How the main content is found (in the spirit of trafilatura, jusText and readability):
 *  1. One walk over the tree gives every element its own block text (text not inside a
 *     nested block element), the link text in it, and its subtree's text. Elements that
 *     never hold content (script, style, svg, form controls, ...) are not entered.
 *  2. A boilerplate hint (a nav/aside/footer/header tag, class/id words like "menu",
 *     "share", "comment", "related", role=navigation, hidden) marks a subtree as bad,
 *     unless it holds more than half of the page's text (a <body class="has-sidebar">).
 *  3. Each block gets a value: + its text for a long block of low link density, - its
 *     text for link lists, bad subtrees and short fragments. The container is the element
 *     whose subtree has the largest sum (a maximum-weight subtree: it takes the article,
 *     leaves the menus around it); an element hinted as the article body (itemprop=
 *     articleBody, entry-content, ...) is preferred when it holds most of that sum.
 *  4. The container is written: blocks separated by newlines, whitespace collapsed (kept
 *     in <pre>), bad subtrees and link-dense blocks left out.
 * Every walk follows parent/child/next links (no recursion, no stack of nodes), so depth is
 * bounded only by memory; libxml2 is told XML_PARSE_HUGE for the same reason. */
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

/* Tag kinds by name: DROP is never entered; BLOCK starts a new paragraph. */
static int tag_kind(const char *n)
{
    static const char *const drop[] = {"script", "style",  "template", "svg",   "math",    "iframe",
                                       "select", "button", "textarea", "input", "object",  "embed",
                                       "canvas", "video",  "audio",    "map",   "title",   "option",
                                       "dialog", "menu",   "link",     "meta",  "frameset"};
    static const char *const block[] = {
        "p",       "div",     "li",      "ul",     "ol",         "dl",         "dd",      "dt",
        "tr",      "td",      "th",      "table",  "section",    "article",    "header",  "footer",
        "nav",     "aside",   "main",    "figure", "figcaption", "blockquote", "form",    "hr",
        "address", "details", "summary", "center", "fieldset",   "legend",     "caption", "body",
        "html",    "tbody",   "thead",   "tfoot",  "head",       "noscript"}; /* head: libxml2 leaves the body's first
                                                                                 elements in it when they come early */
    switch (n[0]) {
    case 'h':
        if (n[1] >= '1' && n[1] <= '6' && !n[2])
            return K_HEADING;
        break;
    case 'p':
        if (!strcmp(n, "pre"))
            return K_PRE;
        break;
    case 'b':
        if (!strcmp(n, "br"))
            return K_BR;
        break;
    default: break;
    }
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        if (n[0] == drop[i][0] && !strcmp(n, drop[i])) /* first byte first: this runs per element */
            return K_DROP;
    for (size_t i = 0; i < sizeof block / sizeof block[0]; i++)
        if (n[0] == block[i][0] && !strcmp(n, block[i]))
            return K_BLOCK;
    return K_INLINE;
}

/* Words of a class/id value that mark boilerplate (matched whole, after splitting on
 * anything that is not a letter or digit). */
static bool bad_word(const char *w, size_t n)
{
    static const char *const words[] = {
        "nav",          "navbar",        "navigation",   "menu",        "menubar",    "footer",        "sidebar",
        "comment",      "comments",      "share",        "sharing",     "social",     "cookie",        "cookies",
        "consent",      "related",       "breadcrumb",   "breadcrumbs", "widget",     "widgets",       "banner",
        "advert",       "advertisement", "ads",          "ad",          "promo",      "newsletter",    "subscribe",
        "subscription", "popup",         "modal",        "pagination",  "pager",      "tags",          "tagcloud",
        "login",        "signup",        "masthead",     "toolbar",     "sponsor",    "sponsored",     "recommended",
        "outbrain",     "taboola",       "disqus",       "skip",        "offcanvas",  "dropdown",      "topbar",
        "copyright",    "shariff",       "socialmedia",  "newsticker",  "teaserlist", "recirculation", "sr",
        "screenreader", "overlay",       "gdpr",         "rating",      "paywall",    "lightbox",      "caption",
        "credit",       "credits",       "twitter",      "tweet",       "promotion",  "rate",          "byline",
        "dateline",     "postmetadata",  "metadata",     "author",      "authorbox",  "bio",           "themes",
        "topics",       "keywords",      "relatedposts", "readmore",    "infobox",    "teaser"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (words[i][0] == w[0] && !strncmp(words[i], w, n) && !words[i][n])
            return true;
    return false;
}

/* Words that make a class/id a layout wrapper rather than boilerplate, whatever else it
 * says ("with-sidebar-right", "article-content sticky-sidebar"): readability's
 * okMaybeItsACandidate. */
static bool ok_word(const char *w, size_t n)
{
    static const char *const words[] = {"content", "article", "main",      "body",    "post",   "entry",
                                        "text",    "story",   "container", "wrapper", "column", "page",
                                        "site",    "layout",  "template",  "single",  "blog",   "col"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (words[i][0] == w[0] && !strncmp(words[i], w, n) && !words[i][n])
            return true;
    return false;
}

/* A class/id value is boilerplate when one of its words is a bad word, unless a layout
 * word is there too; a bad word after "__" (a BEM element: "article__tags") counts even
 * then, as it names the part, not the block around it. */
static bool has_bad_word(const char *v)
{
    size_t i = 0;
    bool bad = false, ok = false;
    while (v[i]) {
        while (v[i] && !isalnum((unsigned char)v[i]))
            i++;
        size_t s = i;
        while (isalnum((unsigned char)v[i]))
            i++;
        if (i == s)
            continue;
        if (bad_word(v + s, i - s)) {
            if (s >= 2 && v[s - 1] == '_' && v[s - 2] == '_')
                return true;
            bad = true;
        } else if (ok_word(v + s, i - s)) {
            ok = true;
        }
    }
    return bad && !ok;
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

/* Per element (index in document order, stored in node->_private as index + 1). */
typedef struct elem {
    uint32_t parent;   /* index of the parent element, UINT32_MAX for the root */
    uint32_t own;      /* bytes of text in this block (not in nested blocks), blocks only */
    uint32_t own_link; /* of which inside <a> */
    uint64_t total;    /* bytes of text in the subtree */
    double sum;        /* block values of the subtree */
    double pos;        /* positive block values of the subtree (prose) */
    xmlNode *node;
    uint8_t kind, hint_bad, hint_content, bad;
} elem;

typedef struct ex {
    elem *e;
    size_t n, cap;
    uint32_t *owners; /* stack of block owners during a walk */
    size_t n_own, cap_own;
    sbuf out;
    bool space, nl; /* pending space / block break in the output */
} ex;

static fg_status push_owner(ex *x, uint32_t i)
{
    if (x->n_own == x->cap_own) {
        size_t nc = x->cap_own ? 2 * x->cap_own : 256;
        uint32_t *p = fg_realloc(x->owners, nc * sizeof *p);
        if (!p)
            return FG_ERR_NOMEM;
        x->owners = p;
        x->cap_own = nc;
    }
    x->owners[x->n_own++] = i;
    return FG_OK;
}

static inline uint32_t idx_of(const xmlNode *n)
{
    return (uint32_t)((uintptr_t)n->_private - 1);
}

/* Lower-cased copy of an attribute value (truncated to cap-1 bytes). */
static const char *attr_lc(const xmlAttr *a, char *buf, size_t cap)
{
    size_t k = 0;
    for (const xmlNode *c = a->children; c && k < cap - 1; c = c->next)
        if (c->content)
            for (const xmlChar *p = c->content; *p && k < cap - 1; p++)
                buf[k++] = (char)tolower(*p);
    buf[k] = 0;
    return buf;
}

/* Hints from attributes: boilerplate, article body, hidden. */
static void read_hints(const xmlNode *n, elem *e)
{
    char v[256];
    for (const xmlAttr *a = n->properties; a; a = a->next) {
        const char *an = (const char *)a->name;
        if (!strcmp(an, "class") || !strcmp(an, "id")) {
            attr_lc(a, v, sizeof v);
            if (has_bad_word(v))
                e->hint_bad = 1;
            if (content_hint(v))
                e->hint_content = 1;
        } else if (!strcmp(an, "itemprop")) {
            if (strstr(attr_lc(a, v, sizeof v), "articlebody"))
                e->hint_content = 1;
        } else if (!strcmp(an, "role")) {
            attr_lc(a, v, sizeof v);
            if (!strcmp(v, "navigation") || !strcmp(v, "banner") || !strcmp(v, "contentinfo") ||
                !strcmp(v, "complementary") || !strcmp(v, "menu") || !strcmp(v, "dialog"))
                e->hint_bad = 1;
        } else if (!strcmp(an, "hidden")) {
            e->hint_bad = 1;
        } else if (!strcmp(an, "aria-hidden")) {
            if (!strcmp(attr_lc(a, v, sizeof v), "true"))
                e->hint_bad = 1;
        } else if (!strcmp(an, "style")) {
            attr_lc(a, v, sizeof v);
            char *d = strstr(v, "display");
            if ((d && strstr(d, "none")) || strstr(v, "visibility:hidden") || strstr(v, "visibility: hidden"))
                e->hint_bad = 1;
        }
    }
}

static uint32_t nonspace_bytes(const xmlChar *s)
{
    uint32_t k = 0;
    for (; *s; s++)
        k += !(*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r' || *s == '\f');
    return k;
}

/* Whether element i or one of its 32 nearest ancestors is an <article> or <main>. */
static bool in_article(const ex *x, uint32_t i)
{
    for (int k = 0; k < 32 && i != UINT32_MAX; k++, i = x->e[i].parent) {
        const char *n = (const char *)x->e[i].node->name;
        if (!strcmp(n, "article") || !strcmp(n, "main"))
            return true;
    }
    return false;
}

/* Walk 1: index elements, own block text and link text, subtree totals. */
static fg_status measure(ex *x, xmlNode *root)
{
    xmlNode *n = root;
    uint32_t cur = UINT32_MAX; /* current element */
    int in_link = 0;
    while (n) {
        bool descend = false;
        if (n->type == XML_ELEMENT_NODE) {
            if (x->n == x->cap) {
                size_t nc = x->cap ? 2 * x->cap : 1024;
                elem *p = fg_realloc(x->e, nc * sizeof *p);
                if (!p)
                    return FG_ERR_NOMEM;
                x->e = p;
                x->cap = nc;
            }
            uint32_t i = (uint32_t)x->n++;
            elem *e = &x->e[i];
            memset(e, 0, sizeof *e);
            e->parent = cur;
            e->node = n;
            n->_private = (void *)(uintptr_t)(i + 1);
            const char *name = (const char *)n->name;
            e->kind = (uint8_t)tag_kind(name);
            if (e->kind != K_DROP) {
                read_hints(n, e);
                if (!strcmp(name, "header") && !in_article(x, cur))
                    e->hint_bad = 1; /* a page header; an <article>'s own header holds its title */
                if (!strcmp(name, "nav") || !strcmp(name, "aside") || !strcmp(name, "footer") ||
                    !strcmp(name, "figure") || !strcmp(name, "figcaption") || !strcmp(name, "address") ||
                    !strcmp(name, "noscript")) /* a noscript left open holds the page: the 50% rule keeps it */
                    e->hint_bad = 1;
                if (!strcmp(name, "article") && !e->hint_bad)
                    e->hint_content = 0; /* several <article>s are a list; the sum decides */
                descend = n->children != NULL;
                if (e->kind != K_INLINE && e->kind != K_BR && push_owner(x, i) != FG_OK)
                    return FG_ERR_NOMEM;
                if (name[0] == 'a' && !name[1])
                    in_link++;
                cur = i;
            }
            if (descend) {
                n = n->children;
                continue;
            }
        } else if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && n->content && x->n_own) {
            uint32_t k = nonspace_bytes(n->content);
            elem *o = &x->e[x->owners[x->n_own - 1]];
            o->own += k;
            if (in_link)
                o->own_link += k;
            if (cur != UINT32_MAX)
                x->e[cur].total += k;
        }
        /* leave n (and every ancestor whose last child it is) */
        while (n) {
            if (n->type == XML_ELEMENT_NODE && n->_private) {
                uint32_t i = idx_of(n);
                elem *e = &x->e[i];
                if (e->kind != K_DROP) {
                    if (e->kind != K_INLINE && e->kind != K_BR)
                        x->n_own--;
                    if (n->name[0] == 'a' && !n->name[1])
                        in_link--;
                    if (e->parent != UINT32_MAX)
                        x->e[e->parent].total += e->total;
                    cur = e->parent;
                }
            }
            if (n == root) {
                n = NULL;
                break;
            }
            if (n->next) {
                n = n->next;
                break;
            }
            n = n->parent;
        }
    }
    return FG_OK;
}

/* Value of one block: + text for prose, - for link lists, boilerplate and fragments. */
static double block_value(const elem *e)
{
    if (e->own == 0 || e->kind == K_INLINE)
        return 0;
    double t = e->own, ld = (double)e->own_link / t;
    if (e->bad || ld > 0.5)
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
    double page = (double)x->e[0].total;
    for (size_t i = 0; i < x->n; i++) { /* parents come before children */
        elem *e = &x->e[i];
        bool pbad = e->parent != UINT32_MAX && x->e[e->parent].bad;
        e->bad = pbad || (e->hint_bad && (double)e->total < 0.5 * page);
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
        if (x->e[i].hint_content && !x->e[i].bad && x->e[i].sum > 0.5 * x->e[best].sum &&
            (hinted == UINT32_MAX || x->e[i].sum > x->e[hinted].sum))
            hinted = (uint32_t)i;
    if (hinted != UINT32_MAX)
        return hinted;
    /* A best subtree outside the page's <main> (or its one <article>) that is only a
     * modal or a side text: the <main> wins when it holds at least half as much prose. */
    uint32_t m = UINT32_MAX, n_article = 0, art = UINT32_MAX;
    for (size_t i = 0; i < x->n; i++) {
        const char *nm = (const char *)x->e[i].node->name;
        if (x->e[i].kind == K_DROP || x->e[i].bad)
            continue;
        if (!strcmp(nm, "main") && (m == UINT32_MAX || x->e[i].pos > x->e[m].pos))
            m = (uint32_t)i;
        if (!strcmp(nm, "article") && x->e[i].pos > 0) {
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

static fg_status out_text(ex *x, const xmlChar *s, bool pre)
{
    for (const xmlChar *p = s; *p;) {
        if (!pre && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == '\f')) {
            x->space = true;
            p++;
            continue;
        }
        const xmlChar *q = p;
        if (pre)
            while (*q)
                q++;
        else
            while (*q && !(*q == ' ' || *q == '\n' || *q == '\t' || *q == '\r' || *q == '\f'))
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
        if (sbuf_put(&x->out, (const char *)p, (size_t)(q - p)) != FG_OK)
            return FG_ERR_NOMEM;
        p = q;
    }
    return FG_OK;
}

/* Walk 2: writes the container's text. */
static fg_status write_text(ex *x, xmlNode *root)
{
    xmlNode *n = root;
    int pre = 0;
    x->n_own = 0;
    while (n) {
        if (n->type == XML_ELEMENT_NODE && n->_private) {
            uint32_t i = idx_of(n);
            const elem *e = &x->e[i];
            if (e->kind != K_DROP && !(e->bad && n != root)) {
                if (e->kind == K_BR) {
                    out_break(x);
                } else if (e->kind != K_INLINE) {
                    out_break(x);
                    if (push_owner(x, i) != FG_OK)
                        return FG_ERR_NOMEM;
                    pre += e->kind == K_PRE;
                }
                if (n->children) {
                    n = n->children;
                    continue;
                }
            }
        } else if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && n->content && x->n_own) {
            const elem *o = &x->e[x->owners[x->n_own - 1]];
            double ld = o->own ? (double)o->own_link / o->own : 0;
            if (ld <= 0.5 && out_text(x, n->content, pre > 0) != FG_OK)
                return FG_ERR_NOMEM;
        }
        while (n) {
            if (n->type == XML_ELEMENT_NODE && n->_private) {
                const elem *e = &x->e[idx_of(n)];
                if (e->kind != K_DROP && e->kind != K_INLINE && e->kind != K_BR && !(e->bad && n != root)) {
                    x->n_own--;
                    pre -= e->kind == K_PRE;
                    out_break(x);
                }
            }
            if (n == root) {
                n = NULL;
                break;
            }
            if (n->next) {
                n = n->next;
                break;
            }
            n = n->parent;
        }
    }
    return FG_OK;
}

static xmlNode *child_named(xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
            return c;
    return NULL;
}

/* <title> text, whitespace collapsed, into *title (fg_malloc'd) or NULL. */
static char *page_title(xmlNode *html)
{
    xmlNode *t = child_named(child_named(html, "head"), "title");
    if (!t)
        return NULL;
    ex x;
    memset(&x, 0, sizeof x);
    for (xmlNode *c = t->children; c; c = c->next)
        if (c->type == XML_TEXT_NODE && c->content && out_text(&x, c->content, false) != FG_OK)
            break;
    if (!x.out.n) {
        fg_free(x.out.p);
        return NULL;
    }
    return x.out.p;
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;
static void xml_init(void)
{
    xmlInitParser();
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
    htmlParserCtxtPtr ctx = htmlNewParserCtxt();
    if (!ctx)
        return fg_error(FG_ERR_NOMEM, "html: cannot create a parser");
    int opts = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET | HTML_PARSE_COMPACT |
               HTML_PARSE_NOBLANKS | XML_PARSE_HUGE | HTML_PARSE_IGNORE_ENC;
    /* libxml2 stops at a NUL byte (the rest of the page would be lost): spaces instead */
    char *copy = NULL;
    if (memchr(html, 0, len)) {
        copy = fg_malloc(len + 1);
        if (!copy) {
            htmlFreeParserCtxt(ctx);
            return fg_error(FG_ERR_NOMEM, "html: out of memory copying %zu bytes", len);
        }
        for (size_t i = 0; i < len; i++)
            copy[i] = html[i] ? html[i] : ' ';
        copy[len] = 0;
        html = copy;
    }
    htmlDocPtr doc = htmlCtxtReadMemory(ctx, html, (int)len, NULL, "UTF-8", opts);
    fg_free(copy); /* the tree holds its own copies of the text */
    xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root) {
        res->reject = "extract_no_html";
        snprintf(res->detail, sizeof res->detail, "no HTML element could be parsed from %zu bytes", len);
        if (doc)
            xmlFreeDoc(doc);
        htmlFreeParserCtxt(ctx);
        return FG_OK;
    }
    fg_status st = FG_OK;
    ex x;
    memset(&x, 0, sizeof x);
    res->title = page_title(root);
    /* From <html>, not <body>: libxml2 puts text it meets before <body> (or after
     * </body>) beside it, and <head> is never entered anyway. */
    xmlNode *top = root;
    st = measure(&x, top);
    if (st == FG_OK && x.n > 0) {
        uint32_t c = choose(&x);
        xmlNode *cn = c == UINT32_MAX ? NULL : x.e[c].node;
        if (cn)
            st = write_text(&x, cn);
        res->container_chars = cn ? x.e[c].total : 0;
        res->page_chars = x.e[0].total;
    }
    if (st == FG_OK) {
        res->text = x.out.p;
        res->len = x.out.n;
        x.out.p = NULL;
        if (res->len == 0) {
            res->reject = "extract_empty";
            snprintf(res->detail, sizeof res->detail, "no main content found (%llu bytes of text in the page)",
                     (unsigned long long)res->page_chars);
        }
    }
    fg_free(x.out.p);
    fg_free(x.e);
    fg_free(x.owners);
    xmlFreeDoc(doc);
    htmlFreeParserCtxt(ctx);
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
