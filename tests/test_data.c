/* test_data.c: the cleaning pieces on hand-written inputs: UTF-8 repair, rules-file
 * errors, each default rule, each quality heuristic and the score, the classifier
 * (train / save / load round trip, held-out accuracy), exact and MinHash dedup, and the
 * readers (JSONL metadata, gzip, zstd, directories, HTML, WARC). */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "frugal/data.h"
#include "harness.h"

static fg_data_rules *rules_from(const char *text)
{
    fg_data_rules *r = NULL;
    fg_status st = fg_data_rules_parse(&r, text, strlen(text), "test.conf");
    FG_CHECK(st == FG_OK, "parse rules: %s", fg_last_error());
    return r;
}

/* Cleans s with r; returns a static copy of the output ("" when rejected, with *rej set). */
static const char *clean(const fg_data_rules *r, fg_data_scratch *s, const char *in, const char **rej)
{
    static char buf[8192];
    const char *out, *rj;
    size_t n;
    fg_status st = fg_data_rules_apply(r, s, in, strlen(in), &out, &n, &rj, NULL);
    FG_CHECK(st == FG_OK, "apply: %s", fg_last_error());
    if (rej)
        *rej = rj;
    if (rj || st != FG_OK)
        return "";
    snprintf(buf, sizeof buf, "%.*s", (int)n, out);
    return buf;
}

static void test_utf8(void)
{
    FG_CHECK(fg_data_utf8_valid("h\xC3\xA9llo \xE4\xB8\xAD \xF0\x9F\x98\x80", 15), "valid mixed");
    static const struct {
        const char *in;
        size_t n;
        const char *want;
        uint32_t bad;
    } cases[] = {
        {"a\xFF"
         "b",
         3,
         "a\xEF\xBF\xBD"
         "b",
         1},                                        /* invalid byte */
        {"\xC0\xAF", 2, "\xEF\xBF\xBD", 1},         /* overlong '/' */
        {"\xED\xA0\x80x", 4, "\xEF\xBF\xBDx", 1},   /* UTF-16 surrogate */
        {"ab\xE4\xB8", 4, "ab\xEF\xBF\xBD", 1},     /* truncated 3-byte sequence */
        {"\x80\x80z", 3, "\xEF\xBF\xBDz", 1},       /* stray continuation bytes: one U+FFFD */
        {"\xF4\x90\x80\x80", 4, "\xEF\xBF\xBD", 1}, /* > U+10FFFF */
        {"ok \xC3\xA9", 5, "ok \xC3\xA9", 0},       /* nothing to repair */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out;
        size_t n;
        uint32_t bad;
        FG_CHECK(fg_data_utf8_valid(cases[i].in, cases[i].n) == (cases[i].bad == 0), "valid? case %zu", i);
        FG_CHECK(fg_data_utf8_repair(cases[i].in, cases[i].n, &out, &n, &bad) == FG_OK, "repair %zu", i);
        FG_CHECK(n == strlen(cases[i].want) && !memcmp(out, cases[i].want, n) && bad == cases[i].bad,
                 "repair case %zu: %zu bytes, %u bad", i, n, bad);
        FG_CHECK(fg_data_utf8_valid(out, n), "repaired text is valid (case %zu)", i);
        fg_free(out);
    }
}

static void test_rules_errors(void)
{
    static const struct {
        const char *text;
        const char *want; /* substring of the error */
    } cases[] = {
        {"# ok\n\nfrobnicate x\n", "test.conf:3:1: unknown directive"},
        {"sub a s/(unclosed/x/\n", "test.conf:1:18: regex error at pattern offset 9"},
        {"sub a s/abc/x\n", "test.conf:1:7: unterminated replacement"},
        {"drop_line b /x/q\n", "test.conf:1:13: unknown regex flag"},
        {"quality nope 1 2\n", "test.conf:1:9: unknown quality heuristic"},
        {"quality min_words 10 50\n", "needs HARD <= SOFT"},
        {"threshold 0.2 0.5\n", "test.conf:1:11: threshold needs numbers"},
        {"sub a s/x/y/\nsub a s/z/w/\n", "test.conf:2:5: duplicate rule name"},
        {"drop_line c /x/ max_words=abc\n", "max_words needs"},
        {"normalize NFD\n", "test.conf:1:11: normalize needs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fg_data_rules *r = NULL;
        fg_status st = fg_data_rules_parse(&r, cases[i].text, strlen(cases[i].text), "test.conf");
        FG_CHECK(st == FG_ERR_FORMAT && r == NULL, "case %zu fails with FG_ERR_FORMAT", i);
        FG_CHECK(strstr(fg_last_error(), cases[i].want) != NULL, "case %zu: error '%s' has '%s'", i, fg_last_error(),
                 cases[i].want);
    }
    fg_data_rules *r = NULL;
    FG_CHECK(fg_data_rules_load(&r, "/nonexistent/rules.conf") == FG_ERR_IO, "missing file is FG_ERR_IO");
    FG_CHECK(strstr(fg_last_error(), "/nonexistent/rules.conf") != NULL, "error names the file");
}

static void test_default_rules(void)
{
    fg_data_rules *r = NULL;
    fg_status st = fg_data_rules_load(&r, fg_test_source_path("configs/clean_rules.conf"));
    FG_CHECK(st == FG_OK, "default rules load: %s", fg_last_error());
    if (!r)
        return;
    fg_data_scratch *s = fg_data_scratch_new(r);
    const char *rej;
    static const struct {
        const char *rule, *in, *want;
    } cases[] = {
        {"html_script", "Hello.<script type=\"x\">var a = '<b>';</script> World.", "Hello. World."},
        {"html_script (style)", "A.<STYLE>p { x: 1 }</STYLE>B.", "A. B."},
        {"html_comment", "Keep.<!-- hidden\ncomment --> this.", "Keep. this."},
        {"html_block + html_tag", "<p>First paragraph.</p><p>Second <b>bold</b> one.</p>",
         "First paragraph.\n\nSecond bold one."},
        {"html_entities", "Fish &amp; chips &lt;3 caf&#233; &#x2014; done&hellip; &bogus; a&b.",
         "Fish & chips <3 caf\xC3\xA9 \xE2\x80\x94 done\xE2\x80\xA6 &bogus; a&b."},
        {"url", "See https://example.com/a?b=1 and www.example.org/x now.", "See and now."},
        {"email", "Write to john.doe+x@mail.example.com today.", "Write to today."},
        {"mention", "Thanks @frugal_bot and me@home.", "Thanks and me@home."},
        {"control",
         "a\x01"
         "b\x7F"
         "c\xC2\x85"
         "d\xE2\x80\x8B"
         "e.",
         "abcde."},
        {"spaces", "too   many\t\tspaces \xC2\xA0 here.", "too many spaces here."},
        {"crlf", "one.\r\ntwo.\rthree.", "one.\ntwo.\nthree."},
        {"blank lines trimmed", "\n\n  a.\n\n\n\n b.  \n\n", "a.\n\nb."},
        {"cookie_notice", "Real text here.\nWe use cookies to improve your experience.\nOther text.",
         "Real text here.\nOther text."},
        {"navigation", "Home | News | Sports | Contact\nThe article starts here.", "The article starts here."},
        {"menu_words", "Skip to main content\nThe article.", "The article."},
        {"copyright", "Body text.\n\xC2\xA9 2021 ACME Corp. All rights reserved.", "Body text."},
        {"javascript", "Please enable JavaScript to view comments.\nBody.", "Body."},
        {"short_no_punct", "Latest News\nA sentence that ends.\nTwo words", "A sentence that ends."},
        {"normalize NFC", "cafe\xCC\x81.", "caf\xC3\xA9."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = clean(r, s, cases[i].in, &rej);
        FG_CHECK(!rej && !strcmp(got, cases[i].want), "rule %s: got '%s' want '%s'", cases[i].rule, got, cases[i].want);
    }
    clean(r, s, "Some text. Lorem ipsum dolor sit amet.", &rej);
    FG_CHECK(rej && !strcmp(rej, "lorem_ipsum"), "reject rule lorem_ipsum: %s", rej ? rej : "(none)");
    /* Line drops are counted per rule index. */
    uint64_t drops[64] = {0};
    const char *out;
    size_t n;
    const char *in = "Home | A | B\nText.\nWe use cookies here\nHome | C | D\n";
    fg_data_rules_apply(r, s, in, strlen(in), &out, &n, &rej, drops);
    uint64_t nav = 0, cookie = 0;
    for (int i = 0; i < fg_data_rules_count(r); i++) {
        if (!strcmp(fg_data_rules_name(r, i), "navigation"))
            nav = drops[i];
        if (!strcmp(fg_data_rules_name(r, i), "cookie_notice"))
            cookie = drops[i];
    }
    FG_CHECK(nav == 2 && cookie == 1, "line drops counted: navigation %llu, cookie %llu", (unsigned long long)nav,
             (unsigned long long)cookie);
    fg_data_scratch_delete(s);
    fg_data_rules_delete(r);

    /* NFKC, max_words and a capture-group replacement from a hand-written rules file. */
    r = rules_from("sub swap s/(\\w+)=(\\w+)/$2:$1/\ndrop_line shout /!$/ max_words=2\nnormalize NFKC\n");
    s = fg_data_scratch_new(r);
    FG_CHECK(!strcmp(clean(r, s, "a=b \xEF\xAC\x81x", &rej), "b:a fix"), "capture groups + NFKC ligature");
    FG_CHECK(!strcmp(clean(r, s, "Stop now!\nThis line is long enough!\nok", &rej), "This line is long enough!\nok"),
             "max_words limits drop_line");
    fg_data_scratch_delete(s);
    fg_data_rules_delete(r);
}

/* The three defects of issue 16, found on real pages of trafilatura's evaluation set. */
static fg_doc html_doc(const char *raw, size_t n)
{
    fg_doc d;
    memset(&d, 0, sizeof d);
    d.format = FG_DOC_HTML;
    d.raw = fg_malloc(n + 1);
    memcpy(d.raw, raw, n);
    d.raw[n] = 0;
    d.raw_len = n;
    d.source = fg_strdup("t.html");
    return d;
}

static void test_issue16_defects(void)
{
    /* 1. charset: a <script charset="utf-8"> before <meta charset="gb2312"> is not the
     * page's charset. "中文" in GB2312 is D6 D0 CE C4. */
    const char gb[] = "<html><head><script charset=\"utf-8\" src=\"a.js\"></script>"
                      "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=gb2312\"></head>"
                      "<body><p>\xD6\xD0\xCE\xC4</p></body></html>";
    fg_doc d = html_doc(gb, sizeof gb - 1);
    FG_CHECK(fg_data_doc_decode(&d, NULL, NULL) == FG_OK, "decode gb2312");
    FG_CHECK(d.text && strstr(d.text, "\xE4\xB8\xAD\xE6\x96\x87") && !d.utf8_repairs,
             "gb2312 page decoded from its <meta>, not the <script charset>: %s", d.text ? d.text : "");
    fg_doc_free(&d);
    /* ... and with no declaration at all uchardet finds it (a longer GB2312 text). */
    char und[4096];
    size_t un = (size_t)snprintf(und, sizeof und, "<html><body><p>");
    for (int i = 0; i < 60; i++)
        un += (size_t)snprintf(und + un, sizeof und - un, "\xD6\xD0\xB9\xFA\xC8\xCB\xC3\xF1\xA3\xAC");
    un += (size_t)snprintf(und + un, sizeof und - un, "</p></body></html>");
    d = html_doc(und, un);
    FG_CHECK(fg_data_doc_decode(&d, NULL, NULL) == FG_OK, "decode undeclared gb2312");
    FG_CHECK(d.text && strstr(d.text, "\xE4\xB8\xAD\xE5\x9B\xBD") && !d.utf8_repairs,
             "undeclared gb2312 detected (uchardet), %u repairs", d.utf8_repairs);
    fg_doc_free(&d);
    /* A UTF-8 BOM is not text. */
    d = html_doc("\xEF\xBB\xBFok", 5);
    FG_CHECK(fg_data_doc_decode(&d, NULL, NULL) == FG_OK && d.len == 2 && !memcmp(d.text, "ok", 2), "BOM dropped");
    fg_doc_free(&d);

    fg_data_rules *r = NULL;
    fg_status st = fg_data_rules_load(&r, fg_test_source_path("configs/clean_rules.conf"));
    FG_CHECK(st == FG_OK, "default rules load: %s", fg_last_error());
    if (!r)
        return;
    fg_data_scratch *s = fg_data_scratch_new(r);
    const char *rej;
    /* 2. A self-closed or unclosed <svg> removes only itself, not the text up to a later </svg>. */
    const char *got = clean(r, s, "<svg class=\"icon\"/><p>The article body.</p><svg><path d=\"M0\"/></svg>", &rej);
    FG_CHECK(!strcmp(got, "The article body."), "self-closed svg: '%s'", got);
    got = clean(r, s, "<svg class=\"logo\"><p>The article body.</p><svg><path/></svg><p>End.</p>", &rej);
    FG_CHECK(!strcmp(got, "The article body.\n\nEnd."), "unclosed svg: '%s'", got);
    got = clean(r, s, "<script src=\"a.js\"/><p>Kept text.</p><script>x()</script>", &rej);
    FG_CHECK(!strcmp(got, "Kept text."), "self-closed script: '%s'", got);
    /* 3. Named entities: the whole HTML5 table (the 15 pages had these). */
    got = clean(r, s, "bl&aring; &aelig;ble &oslash;l &pound;5 &bdquo;zitat&ldquo; &NotEqualTilde; &Afr; &thetasym;.",
                &rej);
    FG_CHECK(!strcmp(got, "bl\xC3\xA5 \xC3\xA6"
                          "ble \xC3\xB8l \xC2\xA3"
                          "5 \xE2\x80\x9Ezitat\xE2\x80\x9C "
                          "\xE2\x89\x82\xCC\xB8 \xF0\x9D\x94\x84 \xCF\x91."),
             "HTML5 named entities: '%s'", got);
    fg_data_scratch_delete(s);
    fg_data_rules_delete(r);
}

/* Language identification (cld2) and the CJK word-length rule of issue 16. */
static void test_langid(void)
{
    static const struct {
        const char *text, *code;
    } cases[] = {
        {"The quick brown fox jumps over the lazy dog while the children watch from the garden.", "en"},
        {"Die Kinder spielen im Garten, während die Eltern in der Küche das Abendessen vorbereiten.", "de"},
        {"Les enfants jouent dans le jardin pendant que les parents préparent le dîner dans la cuisine.", "fr"},
        {"Los niños juegan en el jardín mientras los padres preparan la cena en la cocina de la casa.", "es"},
        {"Дети играют в саду, пока родители готовят ужин на кухне большого старого дома.", "ru"},
        {"孩子们在花园里玩耍，父母在厨房里准备晚饭。这是一个安静的傍晚，大家都很开心。", "zh"},
        {"子供たちは庭で遊び、両親は台所で夕食の準備をしています。静かな夕方でした。", "ja"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fg_data_lang l;
        fg_data_langid(cases[i].text, strlen(cases[i].text), &l);
        FG_CHECK(!strcmp(l.code, cases[i].code), "langid '%.20s...': %s (want %s)", cases[i].text, l.code,
                 cases[i].code);
    }
    fg_data_lang l;
    fg_data_langid("", 0, &l);
    FG_CHECK(!strcmp(l.code, "und"), "empty text: und (%s)", l.code);
    /* Chinese with a few numbers and Latin tokens is not judged by their word length. */
    fg_data_rules *r = rules_from("quality min_mean_word_len 3 2 1\n");
    fg_data_scratch *s = fg_data_scratch_new(r);
    const char *zh = "2020年 3 月 1 日 新华社 记者 报道：孩子们在花园里玩耍，父母在厨房里准备晚饭。 A B 12";
    fg_quality_stats st;
    fg_data_quality_measure(r, s, zh, strlen(zh), &st);
    FG_CHECK(st.v[FG_Q_MIN_MEAN_WORD_LEN] == 5.0, "mostly-CJK text: neutral mean word length (%.2f)",
             st.v[FG_Q_MIN_MEAN_WORD_LEN]);
    fg_data_scratch_delete(s);
    fg_data_rules_delete(r);
}

/* --profile datatrove: the rules file loads, C4's rejects act on the kept lines only, and
 * `compat datatrove` counts distinct stop words and split-off punctuation. */
static void test_profile_datatrove(void)
{
    fg_data_rules *r = NULL;
    fg_status st = fg_data_rules_load(&r, fg_test_source_path("configs/clean_rules_datatrove.conf"));
    FG_CHECK(st == FG_OK && r && fg_data_rules_compat_datatrove(r), "datatrove profile loads: %s", fg_last_error());
    if (!r)
        return;
    fg_data_scratch *s = fg_data_scratch_new(r);
    const char *rej;
    const char *five = "One sentence here is fine. Two sentences are here now. Three is a crowd they say. "
                       "Four makes a pair of pairs. Five is the number we need.";
    FG_CHECK(!strcmp(clean(r, s, five, &rej), five) && !rej, "five sentences kept");
    clean(r, s, "One sentence here is fine. Two sentences are here now. Three is a crowd.", &rej);
    FG_CHECK(rej && !strcmp(rej, "c4_few_sentences"), "three sentences: c4_few_sentences (%s)", rej ? rej : "-");
    char buf[512];
    snprintf(buf, sizeof buf, "%s\nThe set {a, b} is small.", five);
    clean(r, s, buf, &rej);
    FG_CHECK(rej && !strcmp(rej, "c4_curly_bracket"), "a kept line with '{': c4_curly_bracket (%s)", rej ? rej : "-");
    snprintf(buf, sizeof buf, "%s\nmenu {x}", five);
    FG_CHECK(!strcmp(clean(r, s, buf, &rej), five) && !rej, "'{' only in a dropped line: kept, line dropped");
    fg_quality_stats q;
    const char *t = "the the the cat. the dog, with";
    fg_data_quality_measure(r, s, t, strlen(t), &q);
    FG_CHECK(q.v[FG_Q_MIN_STOPWORDS] == 2, "distinct stop words: the, with (%g)", q.v[FG_Q_MIN_STOPWORDS]);
    FG_CHECK_CLOSE(q.v[FG_Q_MIN_ALPHA_WORDS], 7.0 / 9, 1e-12); /* "cat." and "dog," give 2 punctuation tokens */
    fg_data_scratch_delete(s);
    fg_data_rules_delete(r);
}

static fg_quality_stats measure(const fg_data_rules *r, fg_data_scratch *s, const char *text)
{
    fg_quality_stats st;
    fg_data_quality_measure(r, s, text, strlen(text), &st);
    return st;
}

static void test_quality(void)
{
    fg_data_rules *r = rules_from("stopwords en the and of to\nstopwords de der die und\n"
                                  "quality min_words 10 4 1.0\nquality max_bullet_lines 0.5 1.0 0.5\n"
                                  "threshold 0.8 0.4\n");
    fg_data_scratch *s = fg_data_scratch_new(r);
    fg_quality_stats st = measure(r, s, "one two three four five six seven eight nine ten");
    FG_CHECK(st.n_words == 10 && st.v[FG_Q_MIN_WORDS] == 10, "word count %llu", (unsigned long long)st.n_words);
    FG_CHECK_CLOSE(st.v[FG_Q_MIN_MEAN_WORD_LEN], 39.0 / 10, 1e-12);
    st = measure(r, s, "\xE4\xB8\xAD\xE6\x96\x87\xE3\x80\x82\xE6\xB5\x8B"); /* 中文。测 */
    FG_CHECK(st.n_words == 3, "CJK: one word per ideograph, punctuation separates (%llu)",
             (unsigned long long)st.n_words);
    st = measure(r, s, "# tag # other ... words here");
    FG_CHECK_CLOSE(st.v[FG_Q_MAX_SYMBOL_RATIO], 3.0 / 7, 1e-12); /* two '#' and one '...' among 7 words */
    st = measure(r, s, "- item one\n* item two\n\xE2\x80\xA2 item three\nplain line");
    FG_CHECK_CLOSE(st.v[FG_Q_MAX_BULLET_LINES], 0.75, 1e-12);
    st = measure(r, s, "and so on...\nwait for it\xE2\x80\xA6\nend.\nfin");
    FG_CHECK_CLOSE(st.v[FG_Q_MAX_ELLIPSIS_LINES], 0.5, 1e-12);
    st = measure(r, s, "abc 123 !!! d4 \xC3\xA9t\xC3\xA9");
    FG_CHECK_CLOSE(st.v[FG_Q_MIN_ALPHA_WORDS], 3.0 / 5, 1e-12);
    st = measure(r, s, "same line\nother\nsame line\nsame line");
    FG_CHECK_CLOSE(st.v[FG_Q_MAX_DUP_LINES], 0.5, 1e-12);
    FG_CHECK_CLOSE(st.v[FG_Q_MAX_DUP_LINE_CHARS], 18.0 / 32, 1e-12);
    /* Gopher paragraphs (issue 16): "\n\n"-separated; "para one\nx" repeats once of 4, its
     * 10 characters of the 49 in the text. Lines inside a paragraph do not split it. */
    st = measure(r, s, "\npara one\nx\n\n\nsecond one\n\npara one\nx\n\nlast para\n\n");
    FG_CHECK_CLOSE(st.v[FG_Q_MAX_DUP_PARAS], 1.0 / 4, 1e-12);
    FG_CHECK_CLOSE(st.v[FG_Q_MAX_DUP_PARA_CHARS], 10.0 / 49, 1e-12);
    st = measure(r, s, "a\nb\na");
    FG_CHECK(st.v[FG_Q_MAX_DUP_PARAS] == 0, "one paragraph, no duplicate (%g)", st.v[FG_Q_MAX_DUP_PARAS]);
    /* "a b" occurs 3 times: 3 * 2 chars of 8 word chars. */
    st = measure(r, s, "a b a b a b c d");
    FG_CHECK_CLOSE(st.v[FG_Q_MAX_TOP_2GRAM], 6.0 / 8, 1e-12);
    /* Ten words repeated twice: the second copy (10 words) is a duplicate 5-gram run. */
    st = measure(r, s, "w1 w2 w3 w4 w5 w6 w7 w8 w9 w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w0");
    FG_CHECK_CLOSE(st.v[FG_Q_MAX_DUP_5GRAM], 0.5, 1e-12);
    FG_CHECK_CLOSE(st.v[FG_Q_MAX_DUP_10GRAM], 0.5, 1e-12);
    st = measure(r, s, "w1 w2 w3 w4 w5 w6 w7 w8 w9 w0 v1 v2");
    FG_CHECK(st.v[FG_Q_MAX_DUP_5GRAM] == 0 && st.v[FG_Q_MAX_TOP_2GRAM] == 0, "no repeats, no duplicate n-grams");
    st = measure(r, s, "The cat and THE dog, der Hund und die Katze und der Vogel.");
    FG_CHECK(st.v[FG_Q_MIN_STOPWORDS] == 5, "best stop-word list counts 5 (de), got %g", st.v[FG_Q_MIN_STOPWORDS]);

    /* Score: min_words soft 10 hard 4 weight 1; bullets soft 0.5 hard 1 weight 0.5. */
    fg_quality_stats q;
    memset(&q, 0, sizeof q);
    int worst;
    q.v[FG_Q_MIN_WORDS] = 12;
    FG_CHECK_CLOSE(fg_data_quality_score(r, &q, &worst), 1.0, 1e-12);
    FG_CHECK(worst == -1, "no violation, worst -1");
    q.v[FG_Q_MIN_WORDS] = 7; /* halfway between soft 10 and hard 4 */
    FG_CHECK_CLOSE(fg_data_quality_score(r, &q, &worst), 0.5, 1e-12);
    FG_CHECK(worst == FG_Q_MIN_WORDS, "worst is min_words");
    q.v[FG_Q_MIN_WORDS] = 2;
    FG_CHECK_CLOSE(fg_data_quality_score(r, &q, &worst), 0.0, 1e-12);
    q.v[FG_Q_MIN_WORDS] = 20;
    q.v[FG_Q_MAX_BULLET_LINES] = 1.0;
    FG_CHECK_CLOSE(fg_data_quality_score(r, &q, &worst), 0.5, 1e-12);
    FG_CHECK(worst == FG_Q_MAX_BULLET_LINES, "worst is max_bullet_lines");
    q.v[FG_Q_MIN_STOPWORDS] = 0; /* not enabled in this rules file: no penalty */
    FG_CHECK_CLOSE(fg_data_quality_score(r, &q, NULL), 0.5, 1e-12);
    fg_data_scratch_delete(s);
    fg_data_rules_delete(r);
}

static void test_classifier_synthetic(void)
{
    /* Positives use one vocabulary, negatives another: a linear model must separate them. */
    enum { N = 400 };
    static char buf[N][128];
    const char *texts[N];
    size_t lens[N];
    int y[N];
    static const char *good[] = {"research", "analysis", "history", "science", "careful", "report", "study"};
    static const char *bad[] = {"click", "free", "winner", "cheap", "offer", "buy", "now"};
    fg_rng rng;
    fg_rng_seed(&rng, 7);
    for (int i = 0; i < N; i++) {
        y[i] = i % 2;
        const char **v = y[i] ? good : bad;
        int k = 0;
        for (int w = 0; w < 8; w++)
            k += snprintf(buf[i] + k, sizeof buf[i] - (size_t)k, "%s ", v[fg_rng_below(&rng, 7)]);
        texts[i] = buf[i];
        lens[i] = (size_t)k;
    }
    fg_data_classifier_config cc;
    fg_data_classifier_config_init(&cc);
    cc.log2_buckets = 16;
    fg_data_classifier *m = fg_data_classifier_train(&cc, texts, lens, y, N / 2);
    FG_CHECK(m != NULL, "train: %s", fg_last_error());
    if (!m)
        return;
    int ok = 0;
    for (int i = N / 2; i < N; i++)
        ok += (fg_data_classifier_predict(m, texts[i], lens[i]) >= 0.5f) == y[i];
    FG_CHECK(ok == N / 2, "separable held-out set: %d/%d correct", ok, N / 2);
    char path[512];
    snprintf(path, sizeof path, "%s/syn.cls", fg_test_tmpdir());
    FG_CHECK(fg_data_classifier_save(m, path) == FG_OK, "save: %s", fg_last_error());
    fg_data_classifier *m2 = fg_data_classifier_load(path);
    FG_CHECK(m2 != NULL, "load: %s", fg_last_error());
    bool same = m2 != NULL;
    for (int i = 0; m2 && i < N; i++)
        same = same &&
               fg_data_classifier_predict(m, texts[i], lens[i]) == fg_data_classifier_predict(m2, texts[i], lens[i]);
    FG_CHECK(same, "loaded model predicts bit-identically");
    fg_data_classifier_delete(m2);
    /* Corrupt one weight byte: the checksum must catch it. */
    FILE *f = fopen(path, "r+b");
    if (f) {
        fseek(f, 100, SEEK_SET);
        int c = fgetc(f);
        fseek(f, 100, SEEK_SET);
        fputc(c ^ 0x40, f);
        fclose(f);
    }
    FG_CHECK(fg_data_classifier_load(path) == NULL && strstr(fg_last_error(), "checksum"), "corruption detected: %s",
             fg_last_error());
    f = fopen(path, "wb");
    if (f) {
        fputs("not a model", f);
        fclose(f);
    }
    FG_CHECK(fg_data_classifier_load(path) == NULL && strstr(fg_last_error(), "magic"), "bad magic: %s",
             fg_last_error());
    fg_data_classifier_delete(m);
}

/* The SMS Spam Collection: ham = keep. Held-out split every 5th message. */
static void test_classifier_sms(void)
{
    const char *p = fg_test_shared_path("labeled/SMSSpamCollection");
    if (!p) {
        fg_test_skip("classifier on SMS spam", "../shared/data/labeled/SMSSpamCollection not found");
        return;
    }
    FILE *f = fopen(p, "rb");
    FG_CHECK(f != NULL, "open %s", p);
    if (!f)
        return;
    size_t cap = 8192, n = 0;
    char **texts = malloc(cap * sizeof *texts);
    size_t *lens = malloc(cap * sizeof *lens);
    int *y = malloc(cap * sizeof *y);
    char line[4096];
    int ln = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        if (ln++ == 0)
            continue; /* header */
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        size_t l = strcspn(tab + 1, "\r\n");
        texts[n] = strndup(tab + 1, l);
        lens[n] = l;
        y[n] = !strncmp(line, "ham", 3);
        n++;
    }
    fclose(f);
    FG_CHECK(n == 5574, "SMS rows %zu", n);
    /* train on 4 of every 5, test on the 5th */
    size_t ntr = 0, nte = 0;
    const char **tr = malloc(n * sizeof *tr), **te = malloc(n * sizeof *te);
    size_t *ltr = malloc(n * sizeof *ltr), *lte = malloc(n * sizeof *lte);
    int *ytr = malloc(n * sizeof *ytr), *yte = malloc(n * sizeof *yte);
    for (size_t i = 0; i < n; i++) {
        if (i % 5 == 4) {
            te[nte] = texts[i];
            lte[nte] = lens[i];
            yte[nte++] = y[i];
        } else {
            tr[ntr] = texts[i];
            ltr[ntr] = lens[i];
            ytr[ntr++] = y[i];
        }
    }
    fg_data_classifier_config cc;
    fg_data_classifier_config_init(&cc);
    fg_data_classifier *m = fg_data_classifier_train(&cc, tr, ltr, ytr, ntr);
    size_t ok = 0, ham = 0;
    for (size_t i = 0; m && i < nte; i++) {
        ok += (fg_data_classifier_predict(m, te[i], lte[i]) >= 0.5f) == yte[i];
        ham += yte[i];
    }
    double acc = (double)ok / (double)nte, base = (double)ham / (double)nte;
    /* Published linear baselines on this set reach 97-98%; majority class is ~86.6%. 0.95
     * leaves room for seed-to-seed variation while failing any model near the baseline. */
    FG_CHECK(acc >= 0.95, "SMS held-out accuracy %.4f (majority baseline %.4f)", acc, base);
    fg_data_classifier_delete(m);
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    free(y);
    free(tr);
    free(te);
    free(ltr);
    free(lte);
    free(ytr);
    free(yte);
}

static void test_dedup(void)
{
    FG_CHECK(fg_data_dedup_exact_hash("Hello, World!", 13) == fg_data_dedup_exact_hash("  hello world ", 14),
             "exact hash ignores case, punctuation, whitespace runs");
    FG_CHECK(fg_data_dedup_exact_hash("hello world", 11) != fg_data_dedup_exact_hash("hello there", 11),
             "different texts differ");
    fg_data_dedup_config c;
    fg_data_dedup_config_init(&c);
    c.n_perm = 256;
    fg_data_dedup *d = fg_data_dedup_new(&c);
    FG_CHECK(d != NULL, "dedup new");
    if (!d)
        return;
    int bands, rows;
    fg_data_dedup_bands(d, &bands, &rows);
    FG_CHECK(bands * rows <= 256 && bands > 1 && rows > 1, "bands %d x rows %d", bands, rows);
    /* Two word sequences of 200 words sharing the first k: Jaccard of 5-word shingles is
     * computable exactly; the MinHash estimate must be within 0.1 (~3 sigma at 256 perms). */
    static char a[4096], b[4096];
    int na = 0, nb = 0;
    for (int i = 0; i < 200; i++) {
        na += snprintf(a + na, sizeof a - (size_t)na, "w%d ", i);
        nb += snprintf(b + nb, sizeof b - (size_t)nb, i < 150 ? "w%d " : "x%d ", i);
    }
    uint32_t *sa = malloc(256 * sizeof *sa), *sb = malloc(256 * sizeof *sb);
    fg_data_dedup_minhash(d, a, (size_t)na, sa);
    fg_data_dedup_minhash(d, b, (size_t)nb, sb);
    int agree = 0;
    for (int i = 0; i < 256; i++)
        agree += sa[i] == sb[i];
    double shared = 146, total = 196 + 196 - 146; /* shingles: 196 each, 146 in common */
    FG_CHECK(fabs(agree / 256.0 - shared / total) < 0.1, "MinHash estimate %.3f vs Jaccard %.3f", agree / 256.0,
             shared / total);
    FG_CHECK(fg_data_dedup_check(d, fg_data_dedup_exact_hash(a, (size_t)na), sa) == 0, "first document is new");
    FG_CHECK(fg_data_dedup_check(d, fg_data_dedup_exact_hash(a, (size_t)na), sa) == 1, "same text: exact duplicate");
    /* one word changed out of 200: Jaccard ~0.95, above 0.8 */
    static char a2[4096];
    memcpy(a2, a, sizeof a2);
    a2[0] = 'z';
    fg_data_dedup_minhash(d, a2, (size_t)na, sb);
    FG_CHECK(fg_data_dedup_check(d, fg_data_dedup_exact_hash(a2, (size_t)na), sb) == 2, "near duplicate found");
    fg_data_dedup_minhash(d, b, (size_t)nb, sb);
    FG_CHECK(fg_data_dedup_check(d, fg_data_dedup_exact_hash(b, (size_t)nb), sb) == 0,
             "Jaccard 0.42 is not a near duplicate");
    fg_data_dedup_delete(d);
    /* Memory bound: a tiny budget fills up, later documents are counted as not indexed. */
    c.max_bytes = 64 << 10;
    c.n_perm = 16;
    d = fg_data_dedup_new(&c);
    uint32_t sig[16];
    char doc[64];
    for (int i = 0; i < 20000; i++) {
        int k = snprintf(doc, sizeof doc, "document number %d here", i);
        fg_data_dedup_minhash(d, doc, (size_t)k, sig);
        fg_data_dedup_check(d, fg_data_dedup_exact_hash(doc, (size_t)k), sig);
    }
    fg_data_dedup_bands(d, &bands, &rows);
    size_t per_table = 1024;
    while (per_table * 2 <= (64u << 10) / 8 / (size_t)(bands + 1))
        per_table *= 2;
    FG_CHECK(fg_data_dedup_bytes(d) <= (size_t)(bands + 1) * per_table * 8, "tables %zu bytes stay in the bound",
             fg_data_dedup_bytes(d));
    FG_CHECK(fg_data_dedup_not_indexed(d) > 0, "full tables reported: %llu not indexed",
             (unsigned long long)fg_data_dedup_not_indexed(d));
    fg_data_dedup_delete(d);
    free(sa);
    free(sb);
}

static void test_readers(void)
{
    const char *tmp = fg_test_tmpdir();
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s/in", tmp);
    snprintf(p, sizeof p, "mkdir -p %s/sub", dir);
    FG_CHECK(system(p) == 0, "mkdir");
    const char *jl = "{\"id\":7,\"text\":\"first\",\"tags\":[\"a\"]}\n\n{\"text\":\"second\\u0000x\"}\n";
    snprintf(p, sizeof p, "%s/b.jsonl", dir);
    fg_test_write_file(p, jl, strlen(jl));
    /* gzip and zstd copies of a text file */
    snprintf(p, sizeof p, "%s/sub/c.txt.gz", dir);
    gzFile gz = gzopen(p, "wb");
    gzputs(gz, "gzipped text");
    gzclose(gz);
    char zbuf[256];
    size_t zn = ZSTD_compress(zbuf, sizeof zbuf, "{\"text\":\"zstd line\"}\n", 21, 3);
    snprintf(p, sizeof p, "%s/sub/d.jsonl.zst", dir);
    fg_test_write_file(p, zbuf, zn);
    snprintf(p, sizeof p, "%s/a.html", dir);
    fg_test_write_file(p, "<p>page</p>", 11);
    snprintf(p, sizeof p, "%s/notes.csv", dir);
    fg_test_write_file(p, "x,y", 3);
    const char *warc = "WARC/1.0\r\nWARC-Type: request\r\nContent-Length: 4\r\n\r\nGET \r\n\r\n"
                       "WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://x.org/\r\nContent-Length: 61\r\n\r\n"
                       "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>hello warc</p>\r\n\r\n";
    snprintf(p, sizeof p, "%s/e.warc", dir);
    fg_test_write_file(p, warc, strlen(warc));
    const char *paths[1] = {dir};
    fg_data_reader *rd;
    FG_CHECK(fg_data_reader_open(&rd, paths, 1) == FG_OK, "open dir: %s", fg_last_error());
    const char *want_text[] = {"<p>page</p>", "first", "second\0x", "<p>hello warc</p>", "gzipped text", "zstd line"};
    const size_t want_len[] = {11, 5, 8, 17, 12, 9};
    fg_doc d;
    bool got;
    int i = 0;
    while (fg_data_reader_next(rd, &d, &got) == FG_OK && got) {
        fg_data_doc_decode(&d, NULL, NULL);
        FG_CHECK(i < 6 && d.len == want_len[i] && !memcmp(d.text, want_text[i], d.len), "doc %d: '%.*s' (%s)", i,
                 (int)d.len, d.text ? d.text : "", d.source);
        if (i == 1)
            FG_CHECK(d.meta && !strcmp(d.meta, "\"id\":7,\"tags\":[\"a\"]"), "metadata kept: %s", d.meta);
        if (i == 3)
            FG_CHECK(d.meta && strstr(d.meta, "\"url\":\"http://x.org/\"") && d.format == FG_DOC_HTML,
                     "WARC url metadata: %s", d.meta);
        i++;
        fg_doc_free(&d);
    }
    FG_CHECK(i == 6, "6 documents in sorted order, got %d", i);
    FG_CHECK(strstr(fg_data_reader_skipped(rd), "notes.csv") != NULL, "unknown type skipped and listed");
    FG_CHECK(fg_data_reader_warc_skipped(rd) == 1, "WARC request record skipped");
    fg_data_reader_close(rd);
    /* A truncated gzip file becomes a rejected document naming the error. */
    snprintf(p, sizeof p, "%s/t.txt.gz", tmp);
    gz = gzopen(p, "wb");
    for (int k = 0; k < 2000; k++)
        gzprintf(gz, "line %d of a file that will be cut short\n", k);
    gzclose(gz);
    FILE *f = fopen(p, "r+b");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fclose(f);
    FG_CHECK(truncate(p, sz / 2) == 0, "truncate");
    paths[0] = p;
    fg_data_reader_open(&rd, paths, 1);
    FG_CHECK(fg_data_reader_next(rd, &d, &got) == FG_OK && got, "a document comes back");
    FG_CHECK(d.reject && !strcmp(d.reject, "read_error") && d.detail && strstr(d.detail, "gzip"),
             "truncated gzip: %s / %s", d.reject ? d.reject : "-", d.detail ? d.detail : "-");
    FG_CHECK(d.raw_len > 1000, "the bytes read before the cut are kept (%zu)", d.raw_len);
    fg_doc_free(&d);
    FG_CHECK(fg_data_reader_next(rd, &d, &got) == FG_OK && !got, "then the end");
    fg_data_reader_close(rd);
    paths[0] = "/nonexistent/dir";
    FG_CHECK(fg_data_reader_open(&rd, paths, 1) == FG_ERR_IO && strstr(fg_last_error(), "/nonexistent/dir"),
             "missing input named: %s", fg_last_error());

    /* Limits: a WARC record over max_doc_bytes is read past (an excerpt kept) and the
     * next record still comes; a text file over it stops being read at the limit. */
    size_t big = (size_t)3 << 20;
    char *w = malloc(big + 1024);
    FG_ASSERT(w);
    int h = snprintf(w, 1024,
                     "WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: http://big/\r\nContent-Length: %zu\r\n\r\n",
                     big);
    memset(w + h, 'a', big);
    size_t wn = (size_t)h + big;
    wn += (size_t)snprintf(w + wn, 1024,
                           "\r\n\r\nWARC/1.0\r\nWARC-Type: conversion\r\nContent-Length: 5\r\n\r\nsmall\r\n\r\n");
    snprintf(p, sizeof p, "%s/big.warc", tmp);
    fg_test_write_file(p, w, wn);
    paths[0] = p;
    FG_ASSERT(fg_data_reader_open(&rd, paths, 1) == FG_OK);
    fg_data_reader_limits lim;
    fg_data_reader_limits_init(&lim);
    lim.max_doc_bytes = (size_t)1 << 20;
    fg_data_reader_set_limits(rd, &lim);
    FG_CHECK(fg_data_reader_next(rd, &d, &got) == FG_OK && got && d.reject && !strcmp(d.reject, "doc_too_large") &&
                 d.raw_len == FG_DATA_EXCERPT_BYTES && strstr(d.detail, "a WARC record of 3145728 bytes"),
             "big WARC record: %s / %s (%zu bytes kept)", d.reject ? d.reject : "-", d.detail ? d.detail : "-",
             d.raw_len);
    fg_doc_free(&d);
    FG_CHECK(fg_data_reader_next(rd, &d, &got) == FG_OK && got && !d.reject && d.raw_len == 5 &&
                 !memcmp(d.raw, "small", 5),
             "the record after it is read: %s", d.raw ? d.raw : "-");
    fg_doc_free(&d);
    fg_data_reader_close(rd);
    snprintf(p, sizeof p, "%s/big.txt", tmp);
    fg_test_write_file(p, w + h, big);
    FG_ASSERT(fg_data_reader_open(&rd, paths, 1) == FG_OK);
    fg_data_reader_set_limits(rd, &lim);
    FG_CHECK(fg_data_reader_next(rd, &d, &got) == FG_OK && got && d.reject && !strcmp(d.reject, "doc_too_large") &&
                 d.raw_len == FG_DATA_EXCERPT_BYTES && fg_data_reader_bytes_done(rd) < big,
             "big text file: %s, %llu of %zu bytes read", d.reject ? d.reject : "-",
             (unsigned long long)fg_data_reader_bytes_done(rd), big);
    fg_doc_free(&d);
    fg_data_reader_close(rd);
    free(w);
    /* fail_on_read_error at the reader: the truncated gzip is an error, not a document */
    snprintf(p, sizeof p, "%s/t.txt.gz", tmp);
    FG_ASSERT(fg_data_reader_open(&rd, paths, 1) == FG_OK);
    lim.fail_on_read_error = true;
    fg_data_reader_set_limits(rd, &lim);
    fg_status st = fg_data_reader_next(rd, &d, &got);
    FG_CHECK(st == FG_ERR_CORRUPT && !got && strstr(fg_last_error(), "t.txt.gz: gzip: unexpected end of file"),
             "fail_on_read_error: %d '%s'", st, fg_last_error());
    FG_CHECK(strstr(fg_data_reader_errors(rd), "t.txt.gz: byte ") && fg_data_reader_error_files(rd) == 1, "listed: %s",
             fg_data_reader_errors(rd));
    fg_data_reader_close(rd);
}

/* JSON decoding: the fast path and jansson must agree; odd lines fall back to jansson. */
static void test_json_decode(void)
{
    static const struct {
        const char *line;
        const char *text; /* NULL: rejected */
        size_t len;
        const char *meta;
        const char *reject;
    } cases[] = {
        {"{\"text\":\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" a\\/b\\n\\t\\\\\"}",
         "caf\xC3\xA9 \xF0\x9F\x98\x80 \"q\" a/b\n\t\\", 21, NULL, NULL},
        {" { \"id\" : [1, {\"a\": \"}\"}] , \"text\" : \"x\\u0000y\" , \"n\": null } ", "x\0y", 3,
         "\"id\" : [1, {\"a\": \"}\"}],\"n\": null", NULL},
        {"{\"te\\u0078t\":\"escaped key\"}", "escaped key", 11, NULL, NULL}, /* fallback: jansson */
        {"{\"text\":\"a\",\"text\":\"b\"}", "b", 1, NULL, NULL},             /* duplicate key: jansson keeps the last */
        {"{\"text\":\"lone \\udc00\"}", NULL, 0, NULL, "broken_json"},       /* lone surrogate */
        {"{\"text\":\"raw\ttab\"}", NULL, 0, NULL, "broken_json"},           /* control char in string */
        {"{\"text\":\"ok\",\"x\":tru}", NULL, 0, NULL, "broken_json"},       /* bad literal in a member */
        {"{\"text\":\"ok\"} x", NULL, 0, NULL, "broken_json"},               /* trailing garbage */
        {"{\"text\":7}", NULL, 0, NULL, "no_text_field"},
        {"{}", NULL, 0, NULL, "no_text_field"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fg_doc d;
        memset(&d, 0, sizeof d);
        d.format = FG_DOC_JSON;
        d.raw = fg_strdup(cases[i].line);
        d.raw_len = strlen(cases[i].line);
        d.source = fg_strdup("t.jsonl:1");
        FG_CHECK(fg_data_doc_decode(&d, NULL, NULL) == FG_OK, "decode %zu", i);
        if (cases[i].text)
            FG_CHECK(!d.reject && d.len == cases[i].len && !memcmp(d.text, cases[i].text, d.len), "case %zu text", i);
        else
            FG_CHECK(d.reject && !strcmp(d.reject, cases[i].reject), "case %zu rejected as %s (%s)", i, cases[i].reject,
                     d.reject ? d.reject : "not rejected");
        if (cases[i].meta)
            FG_CHECK(d.meta && !strcmp(d.meta, cases[i].meta), "case %zu meta '%s'", i, d.meta ? d.meta : "");
        fg_doc_free(&d);
    }
}

int main(void)
{
    FG_TEST_BEGIN("data");
    test_utf8();
    test_rules_errors();
    test_default_rules();
    test_issue16_defects();
    test_langid();
    test_profile_datatrove();
    test_quality();
    test_classifier_synthetic();
    test_classifier_sms();
    test_dedup();
    test_readers();
    test_json_decode();
    return fg_test_end();
}
