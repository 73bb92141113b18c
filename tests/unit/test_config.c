#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/mig.h"
#include "proto/packet.h"
#include "tap.h"
#include "util/error.h"
#include "util/util.h"

static char *write_tmp(const char *text)
{
        char *path = cta_xstrdup("/tmp/cta-conf-XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0)
                abort();
        if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
                abort();
        close(fd);
        return path;
}

TEST(config__defaults_validate)
{
        struct cta_config c;
        cta_config_defaults(&c);
        ASSERT_OK(cta_config_validate(&c, NULL));
        ASSERT_STR_EQ(c.listen, "0.0.0.0:4434");
        ASSERT_STR_EQ(c.plain_listen, "127.0.0.1:4433");
        ASSERT_INT_EQ(c.one_time_pass_ttl_s, 600);
        /* streams are compressed only on a link slower than 250 MB/s */
        ASSERT_INT_EQ(c.migrate_compress, CTA_COMPRESS_AUTO);
        ASSERT_INT_EQ(c.migrate_compress_auto_mbs, 250);
        ASSERT_INT_EQ(c.migrate_probe_reuse_s, 600); /* a link's rate, ten minutes */
        ASSERT_INT_EQ(c.ct_watch_interval_s, 10);
        cta_config_done(&c);
        return 0;
}

TEST(config__file)
{
        _cleanup_free_ char *p = write_tmp("# comment\n\nlisten = 127.0.0.11:0\n"
                                           "plain_listen=none\n"
                                           "idle_timeout_prelogin = 2  # short\n"
                                           "admin_group = wheel\nlog_level = debug\n"
                                           "migrate_compress = 19\n");
        struct cta_config c;
        cta_config_defaults(&c);
        ASSERT_OK(cta_config_load(&c, p, true, NULL));
        ASSERT_STR_EQ(c.listen, "127.0.0.11:0");
        ASSERT_NULL(c.plain_listen);
        ASSERT_INT_EQ(c.idle_timeout_prelogin_s, 2);
        ASSERT_STR_EQ(c.admin_group, "wheel");
        ASSERT_INT_EQ(c.migrate_compress, 19);
        ASSERT_OK(cta_config_validate(&c, NULL));
        cta_config_done(&c);
        unlink(p);
        _cleanup_free_ char *p2 = write_tmp("migrate_compress = 0\nmigrate_compress = auto\n"
                                            "migrate_compress_auto_mbs = 40\n"
                                            "ct_watch_interval = 60\n");
        cta_config_defaults(&c);
        ASSERT_OK(cta_config_load(&c, p2, true, NULL));
        ASSERT_INT_EQ(c.migrate_compress, CTA_COMPRESS_AUTO);
        ASSERT_INT_EQ(c.migrate_compress_auto_mbs, 40);
        ASSERT_INT_EQ(c.ct_watch_interval_s, 60);
        cta_config_done(&c);
        unlink(p2);
        /* a poll of 0 would spin: refused */
        _cleanup_free_ char *p3 = write_tmp("ct_watch_interval_s = 0\n");
        cta_config_defaults(&c);
        ASSERT_TRUE(cta_config_load(&c, p3, true, NULL) < 0);
        cta_config_done(&c);
        unlink(p3);
        return 0;
}

/* migrate_compress = auto: the probe's rate (MB/s) against migrate_compress_auto_mbs */
TEST(config__auto_compression_levels)
{
        ASSERT_INT_EQ(cta_mig_auto_level(-1, 250), 0);     /* not measured: as it is */
        ASSERT_INT_EQ(cta_mig_auto_level(1800, 250), 0);   /* loopback, 10 Gbit/s */
        ASSERT_INT_EQ(cta_mig_auto_level(250, 250), 0);
        ASSERT_INT_EQ(cta_mig_auto_level(249.9, 250), 1);
        ASSERT_INT_EQ(cta_mig_auto_level(117, 250), 1);    /* 1 Gbit/s */
        ASSERT_INT_EQ(cta_mig_auto_level(31.3, 250), 1);
        ASSERT_INT_EQ(cta_mig_auto_level(11.7, 250), CTA_COMPRESS_LEVEL_ON); /* 100 Mbit/s */
        ASSERT_INT_EQ(cta_mig_auto_level(0, 250), CTA_COMPRESS_LEVEL_ON);
        ASSERT_INT_EQ(cta_mig_auto_level(200000, 1000000), 1);
        return 0;
}

/* The probe's rates, per destination: taken while young enough, bounded in number. */
TEST(config__link_rates_reused)
{
        double mbs = -1;
        uint64_t age = 0;
        ASSERT_TRUE(!cta_mig_linkrate_get(NULL, "tls:a:1", 0, 1000, &mbs, &age));
        cta_mig_linkrate_put(NULL, "tls:a:1", 5, 0); /* (no table: nothing kept) */
        struct cta_mig_linkrates *t = cta_mig_linkrates_new();
        ASSERT_TRUE(!cta_mig_linkrate_get(t, "tls:a:1", 0, 1000, &mbs, &age));
        cta_mig_linkrate_put(t, "tls:a:1", 117.5, 10000);
        cta_mig_linkrate_put(t, "tcp:a:1", 900, 10000); /* another listener, another link */
        ASSERT_TRUE(cta_mig_linkrate_get(t, "tls:a:1", 10400, 1000, &mbs, &age));
        ASSERT_TRUE(mbs == 117.5 && age == 400);
        ASSERT_TRUE(cta_mig_linkrate_get(t, "tls:a:1", 11000, 1000, &mbs, &age)); /* just */
        ASSERT_TRUE(!cta_mig_linkrate_get(t, "tls:a:1", 11001, 1000, &mbs, &age)); /* too old */
        ASSERT_TRUE(!cta_mig_linkrate_get(t, "tls:a:1", 9999, 1000, &mbs, &age)); /* clock */
        ASSERT_TRUE(!cta_mig_linkrate_get(t, "tls:b:1", 10400, 1000, &mbs, &age));
        cta_mig_linkrate_put(t, "tls:a:1", 30, 20000); /* measured again: replaced */
        ASSERT_TRUE(cta_mig_linkrate_get(t, "tls:a:1", 20000, 1000, &mbs, &age));
        ASSERT_TRUE(mbs == 30 && age == 0);
        /* a full table gives up the oldest measurement, here tcp:a:1's */
        char k[32];
        for (int i = 0; i < CTA_MIG_LINKRATES - 2; i++) {
                snprintf(k, sizeof(k), "tls:n%d:1", i);
                cta_mig_linkrate_put(t, k, i, 30000 + (uint64_t)i);
        }
        ASSERT_TRUE(cta_mig_linkrate_get(t, "tcp:a:1", 30000, 1000000, &mbs, &age));
        cta_mig_linkrate_put(t, "tls:new:1", 7, 40000);
        ASSERT_TRUE(!cta_mig_linkrate_get(t, "tcp:a:1", 40000, 1000000, &mbs, &age));
        ASSERT_TRUE(cta_mig_linkrate_get(t, "tls:new:1", 40000, 1000000, &mbs, &age) && mbs == 7);
        ASSERT_TRUE(cta_mig_linkrate_get(t, "tls:a:1", 40000, 1000000, &mbs, &age) && mbs == 30);
        for (int i = 0; i < CTA_MIG_LINKRATES - 2; i++) {
                snprintf(k, sizeof(k), "tls:n%d:1", i);
                ASSERT_TRUE(cta_mig_linkrate_get(t, k, 40000, 1000000, &mbs, &age));
                ASSERT_TRUE(mbs == i);
        }
        cta_mig_linkrates_free(t);
        return 0;
}

TEST(config__errors_name_the_line)
{
        static const char *bad[] = { "listen\n", "bogus = 1\n", "frame_max = 12\n",
                                     "plain_open = perhaps\n", "log_level = loud\n",
                                     "migrate_compress = 20\n", "migrate_compress = -1\n",
                                     "migrate_compress = fast\n",
                                     "migrate_compress_auto_mbs = 0\n" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad); i++) {
                _cleanup_free_ char *p = write_tmp(bad[i]);
                _cleanup_(cta_error_freep) struct cta_error *e = NULL;
                struct cta_config c;
                cta_config_defaults(&c);
                ASSERT_INT_EQ(cta_config_load(&c, p, true, &e), -CTA_E_CONFIG);
                ASSERT_TRUE(strstr(cta_error_msg(e), ":1:") != NULL);
                cta_config_done(&c);
                unlink(p);
        }
        return 0;
}

TEST(config__plain_listener_needs_opt_in)
{
        struct cta_config c;
        cta_config_defaults(&c);
        ASSERT_OK(cta_config_set(&c, "plain_listen", "0.0.0.0:4433", NULL));
        ASSERT_INT_EQ(cta_config_validate(&c, NULL), -CTA_E_CONFIG);
        ASSERT_OK(cta_config_set(&c, "plain_open", "yes", NULL));
        ASSERT_OK(cta_config_validate(&c, NULL));
        ASSERT_OK(cta_config_set(&c, "plain_listen", "[::1]:0", NULL));
        ASSERT_OK(cta_config_set(&c, "plain_open", "no", NULL));
        ASSERT_OK(cta_config_validate(&c, NULL));
        ASSERT_TRUE(cta_addr_is_loopback("127.0.0.12:1"));
        ASSERT_TRUE(!cta_addr_is_loopback("10.0.0.1:1"));
        cta_config_done(&c);
        return 0;
}

TEST(config__missing_file)
{
        struct cta_config c;
        cta_config_defaults(&c);
        ASSERT_OK(cta_config_load(&c, "/nonexistent/ctagentd.conf", false, NULL));
        ASSERT_INT_EQ(cta_config_load(&c, "/nonexistent/ctagentd.conf", true, NULL),
                      -CTA_E_CONFIG);
        cta_config_done(&c);
        return 0;
}

int main(void)
{
        return tap_run(TESTS(T(config__defaults_validate), T(config__file),
                             T(config__errors_name_the_line), T(config__plain_listener_needs_opt_in),
                             T(config__missing_file), T(config__auto_compression_levels),
                             T(config__link_rates_reused)));
}
