// Tests etl/extract.h: the HTML extractor (main content, what is dropped, blocks and white
// space, <pre>, entities, broken markup, title, links resolved against the page and <base>),
// the Markdown extractor (text, title, lists, code, front matter), plain text titles, binary
// sniffing, file kinds, and that a failed allocation leaves the output as it was.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "etl/extract.h"

static struct tw_extracted ex;

static int html(const char *s, const char *base)
{
    return tw_extract_html(s, strlen(s), base, &ex);
}

static const char *text(void)
{
    return tw_str_cstr(&ex.text);
}

static const char *title(void)
{
    return tw_str_cstr(&ex.title);
}

static const char *link(size_t i)
{
    return i < ex.links.len ? TW_VEC_AT(&ex.links, char *, i) : "(none)";
}

static void test_html_main_content(void)
{
    const char *page =
        "<!DOCTYPE html><html><head><title> My  Post </title>"
        "<style>body{color:red}</style><script>var x = 1;</script></head><body>"
        "<header><a href=\"/\">Site name</a></header>"
        "<nav><ul><li><a href=\"/a\">Home</a></li><li>About</li></ul></nav>"
        "<div role=\"navigation\">Crumbs</div>"
        "<main><h1>Hello</h1><p>First   paragraph\n with <b>bold</b> and <a href=\"x\">a "
        "link</a>.</p><aside>Related posts</aside><script>alert(1)</script>"
        "<p>Second&nbsp;one &amp; more &lt;tags&gt; &eacute;t&eacute;</p>"
        "<form><input value=\"q\"><button>Search</button></form>"
        "<p hidden>secret</p><div aria-hidden=\"true\">icon</div>"
        "<p style=\"display: none\">invisible</p>"
        "<noscript>enable js</noscript><iframe src=\"ad\">ad text</iframe>"
        "<svg><title>svg title</title><text>svg text</text></svg>"
        "<ul><li>one</li><li>two</li></ul></main>"
        "<footer>Copyright 2024</footer><div role=\"contentinfo\">Legal</div>"
        "</body></html>";
    CHECK_OK(html(page, NULL));
    CHECK_EQ_STR(text(), "Hello\n\nFirst paragraph with bold and a link.\n\n"
                         "Second\xC2\xA0one & more <tags> \xC3\xA9t\xC3\xA9\n\none\ntwo");
    CHECK_EQ_STR(title(), "My Post");
    CHECK_EQ_INT(ex.links.len, 0); // no base URL: links not asked for

    // Without <main>: the <article>s; without either: the body minus the chrome.
    CHECK_OK(html("<body><nav>menu</nav><div>intro</div><article><h2>A</h2><p>a text</p>"
                  "</article><article><p>b text</p></article><footer>f</footer></body>",
                  NULL));
    CHECK_EQ_STR(text(), "A\n\na text\n\nb text");
    CHECK_OK(html("<body><header>banner</header><div>one</div><div>two<br>three<br><br>four"
                  "</div><footer>f</footer></body>",
                  NULL));
    CHECK_EQ_STR(text(), "one\ntwo\nthree\n\nfour");
    // An article's own header (its heading and date) is content; the page's is not.
    CHECK_OK(html("<header>site</header><article><header><h1>Post</h1><time>May 1</time>"
                  "</header><p>Body.</p></article>",
                  NULL));
    CHECK_EQ_STR(text(), "Post\n\nMay 1\n\nBody.");
    CHECK_EQ_STR(title(), "Post"); // no <title>: the first <h1>
    // An empty <main> falls back to the body.
    CHECK_OK(html("<main> </main><div>the text</div>", NULL));
    CHECK_EQ_STR(text(), "the text");
    // role=main counts as <main>.
    CHECK_OK(html("<div>chrome</div><div role=\"main\"><p>content</p></div>", NULL));
    CHECK_EQ_STR(text(), "content");
    // Tables: a line per row, cells apart.
    CHECK_OK(
        html("<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>", NULL));
    CHECK_EQ_STR(text(), "k v\na 1");
}

static void test_html_pre_and_entities(void)
{
    CHECK_OK(html("<p>before</p><pre>  int x;\n\n    return   x;\n</pre><p>after   it</p>", NULL));
    CHECK_EQ_STR(text(), "before\n\n  int x;\n\n    return   x;\n\nafter it");
    CHECK_OK(html("<pre><code>a  &lt;b&gt;\n  c</code></pre>", NULL));
    CHECK_EQ_STR(text(), "a  <b>\n  c");
    // Legacy entities need no semicolon ("&not" in "&notit;", "&lt"), unknown ones stay.
    CHECK_OK(html("<p>&copy; &#8364; &#x41; &amp;amp; &bogus; &notit; &lt</p>", NULL));
    CHECK_EQ_STR(text(), "\xC2\xA9 \xE2\x82\xAC A &amp; &bogus; \xC2\xACit; <");
    CHECK_OK(html("<title>Caf&eacute; &amp;\n  Bar</title><p>x</p>", NULL));
    CHECK_EQ_STR(title(), "Caf\xC3\xA9 & Bar");
    // An empty <title> falls back to the first <h1>, inline markup and all.
    CHECK_OK(html("<title> </title><h1>The <em>real</em>\n title</h1><h1>second</h1>", NULL));
    CHECK_EQ_STR(title(), "The real title");
    CHECK_OK(html("<p>no title here</p>", NULL));
    CHECK_EQ_STR(title(), "");
}

static void test_html_broken(void)
{
    CHECK_OK(html("<div><p>unclosed <b>bold <i>both</div><p>next", NULL));
    CHECK_EQ_STR(text(), "unclosed bold both\n\nnext");
    // A <title> in the body is the title, not text.
    CHECK_OK(html("<body><p>text</p><title>Late &amp; title</title><p>more</p></body>", NULL));
    CHECK_EQ_STR(text(), "text\n\nmore");
    CHECK_EQ_STR(title(), "Late & title");
    CHECK_OK(html("<html><body><p>a</p></body></html><p>after the end", NULL));
    CHECK_EQ_STR(text(), "a\n\nafter the end");
    CHECK_OK(html("plain text, no tags at all", NULL));
    CHECK_EQ_STR(text(), "plain text, no tags at all");
    CHECK_OK(html("<<<>>></p></div>&&&<script>never closed", NULL));
    CHECK_EQ_STR(text(), "<<<>>>\n\n&&&"); // a stray </p> is an empty paragraph
    CHECK_OK(html("", NULL));
    CHECK_EQ_STR(text(), "");
    CHECK_OK(tw_extract_html(NULL, 0, NULL, &ex));
    CHECK_EQ_STR(text(), "");
    // NUL bytes and invalid UTF-8 do not stop the parser.
    static const char bad[] = "<p>a\0b \xFF\xFE c</p>";
    CHECK_OK(tw_extract_html(bad, sizeof bad - 1, NULL, &ex));
    CHECK(strncmp(text(), "a", 1) == 0 && strstr(text(), " c") != NULL);
    // Deep nesting: the walk has no recursion.
    tw_str deep;
    tw_str_init(&deep);
    for (int i = 0; i < 20000; i++)
        REQUIRE(tw_str_puts(&deep, "<div><span>") == 0);
    REQUIRE(tw_str_puts(&deep, "deep") == 0);
    CHECK_OK(tw_extract_html(tw_str_cstr(&deep), tw_str_len(&deep), NULL, &ex));
    CHECK_EQ_STR(text(), "deep");
    tw_str_free(&deep);
}

static void test_html_links(void)
{
    const char *page = "<html><head><title>t</title></head><body>"
                       "<nav><a href=\"/nav/page\">nav links count</a></nav>"
                       "<a href=\"sibling.html\">1</a>"
                       "<a href=\"../up.html?q=1#frag\">2</a>"
                       "<a href=\"https://Other.Example.COM/Path#x\">3</a>"
                       "<a href=\"//cdn.example.org/lib\">4</a>"
                       "<a href=\"sibling.html#again\">dup</a>"
                       "<a href=\"mailto:me@example.org\">m</a>"
                       "<a href=\"javascript:void(0)\">j</a>"
                       "<a href=\"tel:+123\">t</a>"
                       "<a href=\"ftp://files.example.org/x\">f</a>"
                       "<a href=\"#top\">same page</a>"
                       "<a href=\"\">empty</a>"
                       "<a>no href</a>"
                       "<a href=\"  spaced name.html \n\">s</a>"
                       "<a href=\"?page=2\">q</a>"
                       "<a href=\"http://[broken\">b</a>"
                       "</body></html>";
    CHECK_OK(html(page, "https://example.org/blog/post/index.html"));
    CHECK_EQ_INT(ex.links.len, 7);
    CHECK_EQ_STR(link(0), "https://example.org/nav/page");
    CHECK_EQ_STR(link(1), "https://example.org/blog/post/sibling.html");
    CHECK_EQ_STR(link(2), "https://example.org/blog/up.html?q=1");
    CHECK_EQ_STR(link(3), "https://other.example.com/Path");
    CHECK_EQ_STR(link(4), "https://cdn.example.org/lib");
    CHECK_EQ_STR(link(5), "https://example.org/blog/post/spaced%20name.html");
    CHECK_EQ_STR(link(6), "https://example.org/blog/post/index.html?page=2");

    // <base href> (itself relative to the page) changes what relative links resolve against.
    CHECK_OK(html("<head><base href=\"/docs/v2/\"><base href=\"/ignored/\"></head>"
                  "<a href=\"guide.html\">g</a><a href=\"../v1/\">v1</a><a href=\"/abs\">a</a>",
                  "http://example.org:8080/a/b"));
    CHECK_EQ_INT(ex.links.len, 3);
    CHECK_EQ_STR(link(0), "http://example.org:8080/docs/v2/guide.html");
    CHECK_EQ_STR(link(1), "http://example.org:8080/docs/v1/");
    CHECK_EQ_STR(link(2), "http://example.org:8080/abs");
    CHECK_OK(html("<base href=\"https://mirror.example.net/root/\"><a href=\"x\">x</a>",
                  "http://example.org/"));
    CHECK_EQ_INT(ex.links.len, 1);
    CHECK_EQ_STR(link(0), "https://mirror.example.net/root/x");

    // A base URL that does not parse: absolute links only.
    CHECK_OK(html("<a href=\"rel\">r</a><a href=\"http://ok.example/\">o</a>", "not a url"));
    CHECK_EQ_INT(ex.links.len, 1);
    CHECK_EQ_STR(link(0), "http://ok.example/");
    // Links inside foreign content (svg) or scripts are not the page's.
    CHECK_OK(html("<svg><a href=\"/svg\">s</a></svg><script>'<a href=\"/js\">'</script>"
                  "<a href=\"/real\">r</a>",
                  "http://example.org/"));
    CHECK_EQ_INT(ex.links.len, 1);
    CHECK_EQ_STR(link(0), "http://example.org/real");
}

static int md(const char *s)
{
    return tw_extract_markdown(s, strlen(s), &ex);
}

static void test_markdown(void)
{
    CHECK_OK(md("Intro line\n\n# The *Title* `code`\n\nSome **bold** text and a "
                "[link](http://x.org)\nsoft break.  \nhard break.\n\n"
                "- one\n- two\n  - nested\n- three\n\n"
                "1. first\n\n2. second (loose)\n\n"
                "> quoted\n\n```c\nint main() {\n    return 0;\n}\n```\n\n"
                "![alt text](img.png) after image\n\n---\n\n<div>html block</div>\n\n"
                "## Second heading\n\nEnd with <b>inline</b> html."));
    CHECK_EQ_STR(text(), "Intro line\n\nThe Title code\n\nSome bold text and a link\n"
                         "soft break.\nhard break.\n\none\ntwo\nnested\nthree\n\n"
                         "first\n\nsecond (loose)\n\nquoted\n\n"
                         "int main() {\n    return 0;\n}\n\n after image\n\n"
                         "Second heading\n\nEnd with inline html.");
    CHECK_EQ_STR(title(), "The Title code");
    CHECK_OK(md("Setext heading\nover two lines\n===\n\ntext"));
    CHECK_EQ_STR(title(), "Setext heading over two lines");
    CHECK_OK(md("no heading at all"));
    CHECK_EQ_STR(title(), "");
    CHECK_EQ_STR(text(), "no heading at all");
    // Front matter is not text; its title wins over the first heading.
    CHECK_OK(md("---\nlayout: post\ntitle: \"Front: matter\"\ndate: 2020-01-01\n---\n"
                "# Heading\n\nbody"));
    CHECK_EQ_STR(title(), "Front: matter");
    CHECK_EQ_STR(text(), "Heading\n\nbody");
    CHECK_OK(md("+++\ntitle = 'Hugo'\n+++\nbody"));
    CHECK_EQ_STR(title(), "Hugo");
    CHECK_EQ_STR(text(), "body");
    CHECK_OK(md("---\nlayout: x\n---\n# H\n"));
    CHECK_EQ_STR(title(), "H");
    CHECK_EQ_STR(text(), "H");
    // A "---" never closed is a thematic break, not front matter.
    CHECK_OK(md("---\nnot front matter"));
    CHECK_EQ_STR(text(), "not front matter");
    CHECK_OK(md("\xEF\xBB\xBF# BOM\n&amp; &copy;"));
    CHECK_EQ_STR(title(), "BOM");
    CHECK_EQ_STR(text(), "BOM\n\n& \xC2\xA9");
    CHECK_OK(tw_extract_markdown(NULL, 0, &ex));
    CHECK_EQ_STR(text(), "");
}

static int txt(const char *s)
{
    return tw_extract_text(s, strlen(s), &ex);
}

static void test_text(void)
{
    CHECK_OK(txt("A Title\n\nThe body.\n"));
    CHECK_EQ_STR(title(), "A Title");
    CHECK_EQ_STR(text(), "A Title\n\nThe body.\n");
    CHECK_OK(txt("\n\n  Indented title  \r\nmore text"));
    CHECK_EQ_STR(title(), "Indented title");
    CHECK_EQ_STR(text(), "\n\n  Indented title  \r\nmore text");
    CHECK_OK(txt("only one line"));
    CHECK_EQ_STR(title(), "");
    CHECK_OK(txt("only one line\n\n   \n"));
    CHECK_EQ_STR(title(), "");
    char longline[200];
    memset(longline, 'x', 130);
    strcpy(longline + 130, "\n\nbody");
    CHECK_OK(txt(longline));
    CHECK_EQ_STR(title(), "");
    CHECK_EQ_INT(tw_str_len(&ex.text), 136);
    CHECK_OK(txt("\xEF\xBB\xBFT\nx"));
    CHECK_EQ_STR(title(), "T");
    CHECK_EQ_STR(text(), "T\nx");
    CHECK_OK(txt(""));
    CHECK_EQ_STR(text(), "");
    CHECK_EQ_STR(title(), "");
}

static void test_binary(void)
{
    CHECK(!tw_looks_binary("", 0));
    const char *plain = "plain text\twith tabs\r\n\f";
    CHECK(!tw_looks_binary(plain, strlen(plain)));
    CHECK(!tw_looks_binary("caf\xC3\xA9 \xE2\x82\xAC", 9));
    const char *bad = "\xFF\xFE invalid utf-8 is still text";
    CHECK(!tw_looks_binary(bad, strlen(bad)));
    CHECK(tw_looks_binary("ab\0cd", 5));
    static const unsigned char png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0 };
    CHECK(tw_looks_binary(png, sizeof png));
    // Control characters: 3 of 10 is not binary, 4 of 10 is.
    CHECK(!tw_looks_binary("\x01\x02\x03"
                           "abcdefg",
                           10));
    CHECK(tw_looks_binary("\x01\x02\x03\x04"
                          "abcdef",
                          10));
    CHECK(tw_looks_binary("\x1B\x1B\x1B\x7F", 4));
    // The BOM is not counted; only the first 8 KiB are looked at.
    CHECK(!tw_looks_binary("\xEF\xBB\xBFok", 5));
    char *big = malloc(10000);
    REQUIRE(big);
    memset(big, 'a', 10000);
    big[9000] = 0;
    CHECK(!tw_looks_binary(big, 10000));
    big[100] = 0;
    CHECK(tw_looks_binary(big, 10000));
    free(big);
}

static void test_file_kind(void)
{
    CHECK_EQ_STR(tw_file_kind("notes.md"), "markdown");
    CHECK_EQ_STR(tw_file_kind("/a/b/README.MARKDOWN"), "markdown");
    CHECK_EQ_STR(tw_file_kind("page.html"), "html");
    CHECK_EQ_STR(tw_file_kind("dir.d/page.HTM"), "html");
    CHECK_EQ_STR(tw_file_kind("a.txt"), "text");
    CHECK_EQ_STR(tw_file_kind("doc.rst"), "text");
    CHECK_EQ_STR(tw_file_kind("README"), "text");
    CHECK_EQ_STR(tw_file_kind("src/LICENSE"), "text");
    const char *code[] = { "main.c",      "x.h",
                           "a.cpp",       "k.cu",
                           "m.py",        "app.js",
                           "t.tsx",       "g.go",
                           "lib.rs",      "A.java",
                           "s.sh",        "q.sql",
                           "x.rb",        "c.cs",
                           "k.kt",        "Makefile",
                           "GNUmakefile", "CMakeLists.txt",
                           "Dockerfile",  "Dockerfile.dev",
                           "meson.build", "BUILD.bazel",
                           "x.cmake",     "c.yaml",
                           "Cargo.toml",  "a/b/go.mod",
                           "p.proto",     "s.S",
                           NULL };
    for (size_t i = 0; code[i]; i++) {
        const char *k = tw_file_kind(code[i]);
        if (!k || strcmp(k, "code") != 0)
            fprintf(stderr, "kind of %s: %s\n", code[i], k ? k : "(null)");
        CHECK(k && strcmp(k, "code") == 0);
    }
    const char *img[] = { "a.png", "b.JPG", "c.jpeg", "d.gif",  "e.webp", "f.svg",
                          "g.ico", "h.bmp", "i.tiff", "j.avif", NULL };
    for (size_t i = 0; img[i]; i++)
        CHECK_EQ_STR(tw_file_kind(img[i]), "image");
    CHECK(tw_file_kind("archive.tar.gz") == NULL);
    CHECK(tw_file_kind("data.bin") == NULL);
    CHECK(tw_file_kind("notes") == NULL);       // no extension, no known name
    CHECK(tw_file_kind(".bashrc") == NULL);     // a hidden name, not an extension
    CHECK(tw_file_kind("dir.md/file") == NULL); // the folder's dot is not the file's
    CHECK(tw_file_kind("") == NULL);
    CHECK(tw_file_kind(NULL) == NULL);
}

// Every allocation of an extraction failing in turn: the error is TW_ENOMEM, out keeps what
// it held, and nothing leaks.
static void test_alloc_failures(void)
{
    static const char page[] = "<title>T</title><main><p>x <a href=\"a\">a</a></p></main>";
    static const char mdoc[] = "---\ntitle: t\n---\n# H\n\n- a\n- b\n";
    for (int which = 0; which < 3; which++) {
        struct tw_extracted e;
        tw_extracted_init(&e);
        REQUIRE(tw_str_puts(&e.text, "old") == 0);
        long live = tw_mem_live();
        int failures = 0, rc = 0;
        for (long k = 1; k < 200; k++) {
            tw_mem_fail_after(k);
            if (which == 0)
                rc = tw_extract_html(page, sizeof page - 1, "http://h.example/", &e);
            else if (which == 1)
                rc = tw_extract_markdown(mdoc, sizeof mdoc - 1, &e);
            else
                rc = tw_extract_text("T\n\nbody", 7, &e);
            tw_mem_fail_after(0);
            if (rc == 0)
                break;
            failures++;
            CHECK_EQ_INT(rc, TW_ENOMEM);
            CHECK_EQ_STR(tw_str_cstr(&e.text), "old");
            CHECK_EQ_INT(tw_mem_live(), live);
        }
        CHECK(rc == 0 && failures > 0);
        CHECK(strcmp(tw_str_cstr(&e.text), "old") != 0);
        tw_extracted_free(&e);
    }
}

int main(void)
{
    tw_extracted_init(&ex);
    test_html_main_content();
    test_html_pre_and_entities();
    test_html_broken();
    test_html_links();
    test_markdown();
    test_text();
    test_binary();
    test_file_kind();
    test_alloc_failures();
    tw_extracted_free(&ex);
    return check_report("test_extract");
}
