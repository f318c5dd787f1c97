// The BM25 index persisted to the home: saved into the content-addressed store (blobs/),
// loaded back by its name with the same results; the store itself: names are SHA-256,
// storing twice keeps one copy, a corrupted blob is an error naming it.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "check.h"
#include "store/blob.h"
#include "store/home.h"
#include "text/bm25.h"

static const char *docs[] = {
    "The Congress shall make no law respecting an establishment of religion.",
    "We hold these truths to be self-evident, that all men are created equal.",
    "The union of these States is perpetual; the Union is older than the Constitution.",
    "Four score and seven years ago our fathers brought forth on this continent a new nation.",
    "The only thing we have to fear is fear itself.",
};

int main(void)
{
    char root[] = "/tmp/twin-test-bm25-home-XXXXXX";
    REQUIRE(mkdtemp(root));
    char home_path[512];
    snprintf(home_path, sizeof home_path, "%s/home", root);
    int created;
    CHECK_OK(tw_home_init(home_path, &created));
    struct tw_home *h = NULL;
    CHECK_OK(tw_home_open(home_path, &h));
    REQUIRE(h);

    // The store: the name is the SHA-256 of the bytes; a second put changes nothing.
    char hex[TW_BLOB_HEX], hex2[TW_BLOB_HEX], want[TW_BLOB_HEX];
    uint8_t d[32];
    tw_sha256("hello", 5, d);
    tw_sha256_hex(d, want);
    CHECK_OK(tw_blob_put(h, "hello", 5, hex));
    CHECK_EQ_STR(hex, want);
    CHECK_OK(tw_blob_put(h, "hello", 5, hex2));
    CHECK_EQ_STR(hex2, hex);
    char path[1024];
    CHECK_OK(tw_blob_path(h, hex, path, sizeof path));
    char expect_path[1024];
    snprintf(expect_path, sizeof expect_path, "%s/blobs/%.2s/%s", home_path, hex, hex + 2);
    CHECK_EQ_STR(path, expect_path);
    char *buf;
    size_t len;
    CHECK_OK(tw_blob_read(h, hex, 1024, &buf, &len));
    CHECK(len == 5 && memcmp(buf, "hello", 5) == 0);
    tw_free(buf);
    CHECK_EQ_INT(tw_blob_path(h, "xyz", path, sizeof path), TW_EINVAL);
    CHECK_EQ_INT(tw_blob_read(h,
                              "0000000000000000000000000000000000000000000000000000000000000000",
                              1024, &buf, &len),
                 TW_ENOENT);

    // The BM25 index: written under blobs/, moved into the store, loaded by its name.
    struct tw_bm25_options opt = tw_bm25_options_default();
    tw_bm25 *ix = NULL;
    CHECK_OK(tw_bm25_new(&opt, &ix));
    REQUIRE(ix);
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++)
        CHECK_OK(tw_bm25_add(ix, 100 + i, docs[i], strlen(docs[i])));
    char tmp[1024];
    CHECK_OK(tw_blob_tmp_path(h, tmp, sizeof tmp));
    CHECK_OK(tw_bm25_save(ix, tmp));
    char ix_hex[TW_BLOB_HEX];
    CHECK_OK(tw_blob_put_file(h, tmp, ix_hex));
    CHECK(!tw_file_exists(tmp));
    CHECK_OK(tw_blob_path(h, ix_hex, path, sizeof path));
    tw_bm25 *back = NULL;
    CHECK_OK(tw_bm25_load(path, &back));
    REQUIRE(back);
    struct tw_bm25_hit a[5], b[5];
    size_t na = 0, nb = 0;
    CHECK_OK(tw_bm25_search(ix, "union fear", 10, 5, NULL, NULL, a, &na));
    CHECK_OK(tw_bm25_search(back, "union fear", 10, 5, NULL, NULL, b, &nb));
    CHECK_EQ_INT(na, 2);
    CHECK_EQ_INT(nb, na);
    for (size_t i = 0; i < na && i < nb; i++)
        CHECK(a[i].id == b[i].id && a[i].score == b[i].score);
    // Saving the same index again gives the same blob.
    CHECK_OK(tw_blob_tmp_path(h, tmp, sizeof tmp));
    CHECK_OK(tw_bm25_save(back, tmp));
    CHECK_OK(tw_blob_put_file(h, tmp, hex2));
    CHECK_EQ_STR(hex2, ix_hex);
    struct tw_home_stats st;
    CHECK_OK(tw_home_stats(h, &st));
    CHECK_EQ_INT(st.blob_count, 2);

    // A blob whose bytes changed is refused by name.
    CHECK_OK(tw_blob_path(h, hex, path, sizeof path));
    chmod(path, 0644);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("jello", f);
    fclose(f);
    CHECK_EQ_INT(tw_blob_read(h, hex, 1024, &buf, &len), TW_EFORMAT);
    CHECK(strstr(tw_error_msg(), "corrupted") != NULL);

    tw_bm25_free(ix);
    tw_bm25_free(back);
    tw_home_close(h);
    CHECK_OK(tw_remove_tree(root));
    return check_report("bm25_home");
}
