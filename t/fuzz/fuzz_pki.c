/*
 * fuzz_pki.c: see fuzz_pki.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "cs_crypto.h"
#include "fuzz_pki.h"

static const char pki_ca_crt[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBYjCCAQigAwIBAgICEAEwCgYIKoZIzj0EAwIwFzEVMBMGA1UEAwwMZnV6eiB0\n"
    "ZXN0IENBMCAXDTAwMDEwMTAwMDAwMFoYDzIwOTkxMjMxMjM1OTU5WjAXMRUwEwYD\n"
    "VQQDDAxmdXp6IHRlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR5w+br\n"
    "tpt0LTdYOaYLQT/7mPHVvCenPY/k7hOBYFKjSvl/UaW+A9Q58RnsWqggKm82xTWD\n"
    "lDmXq4Rcsf4O97M3o0IwQDAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIB\n"
    "BjAdBgNVHQ4EFgQUBi+K1Uq1FHGMG2b9UfE0Y9qPe68wCgYIKoZIzj0EAwIDSAAw\n"
    "RQIgLTAxjd/DfTVKOqrd+gooOgPMUMrZkK3GxofkkjLrYmUCIQCPvJ3+xpORtkD8\n"
    "KjDnpTUB7X+d5aCJBLNC2uTjPUQf/g==\n"
    "-----END CERTIFICATE-----\n";

static const char pki_leaf_crt[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBrDCCAVKgAwIBAgICEAIwCgYIKoZIzj0EAwIwFzEVMBMGA1UEAwwMZnV6eiB0\n"
    "ZXN0IENBMCAXDTAwMDEwMTAwMDAwMFoYDzIwOTkxMjMxMjM1OTU5WjAWMRQwEgYD\n"
    "VQQDDAtleGFtcGxlLmNvbTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMzENFLk\n"
    "1e6PoW9Wcjfux09itw/i+Knc/w/YazZiFj1/aCF3SUK9FiRik0O5NM1uw4c/Um7I\n"
    "zB3vxB0KdTJgRhajgYwwgYkwPAYDVR0RBDUwM4ILZXhhbXBsZS5jb22CDSouZXhh\n"
    "bXBsZS5jb22CFXhuLS1iY2hlci1rdmEuZXhhbXBsZTAJBgNVHRMEAjAAMB0GA1Ud\n"
    "DgQWBBTACnpNiFKSai/HpBdTrtn9thOg/jAfBgNVHSMEGDAWgBQGL4rVSrUUcYwb\n"
    "Zv1R8TRj2o97rzAKBggqhkjOPQQDAgNIADBFAiEA56dYc5wPV1qD7YofGIc4uFyB\n"
    "BxknutKc2qXTNVvX3gUCIEP5Ywap7niTZ68ufo3ycob+dtBnlv5BwnqummfhwxLM\n"
    "-----END CERTIFICATE-----\n";

static const char pki_leaf_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8XUeAsIZyLs1hWxw\n"
    "dxHcU9MRliqDNQWN0APG/HLyfpahRANCAATMxDRS5NXuj6FvVnI37sdPYrcP4vip\n"
    "3P8P2Gs2YhY9f2ghd0lCvRYkYpNDuTTNbsOHP1JuyMwd78QdCnUyYEYW\n"
    "-----END PRIVATE KEY-----\n";

static const char pki_rleaf_crt[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICWDCCAf2gAwIBAgICEAMwCgYIKoZIzj0EAwIwFzEVMBMGA1UEAwwMZnV6eiB0\n"
    "ZXN0IENBMCAXDTAwMDEwMTAwMDAwMFoYDzIwOTkxMjMxMjM1OTU5WjAaMRgwFgYD\n"
    "VQQDDA9yc2EuZXhhbXBsZS5jb20wggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEK\n"
    "AoIBAQC1i4eSN9C/G4t04gnBD0vGll4q7GEJG4WAoIJ7B9/BZl5RTC/IkBOKkFvh\n"
    "mCCwWVnG/vcWd5AKupMJOdUfHLL0bvtXkpINd7cmM66rkbJy70B2Y2rj5iRJ0fqa\n"
    "qnacdfJLVF1qrOGXJyrHa01bpmAvbMIQXSpgL7Oa/0smhWtpJIrde7v5synJnnJJ\n"
    "RtWzX9/pZkBgpD6YZWcz1+JBiP/4Yz5Gwd1bXFEiiQjQuKUrOkxD7PVLXuOTSUYc\n"
    "QtatSkRny37uZaswJaIecKj93sJldRfCeAiudMpW3t1wh+8NfH5ElMWLMBuL5yGu\n"
    "0q+4wrMQq6eBOIKt5BHhHMjzOxbfAgMBAAGjaTBnMBoGA1UdEQQTMBGCD3JzYS5l\n"
    "eGFtcGxlLmNvbTAJBgNVHRMEAjAAMB0GA1UdDgQWBBSBQOvnTjABEb+xENJ6IHC6\n"
    "vKdJzjAfBgNVHSMEGDAWgBQGL4rVSrUUcYwbZv1R8TRj2o97rzAKBggqhkjOPQQD\n"
    "AgNJADBGAiEA9PBTR9UyRyRK8xuzOQ3GhvgRZ0p0uV+ndxbXrjaPHMUCIQCGTUsV\n"
    "BblMsNNbJQC3vdzb8fCU3OFpzLXTS6vZrFMdiA==\n"
    "-----END CERTIFICATE-----\n";

static const char pki_rleaf_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC1i4eSN9C/G4t0\n"
    "4gnBD0vGll4q7GEJG4WAoIJ7B9/BZl5RTC/IkBOKkFvhmCCwWVnG/vcWd5AKupMJ\n"
    "OdUfHLL0bvtXkpINd7cmM66rkbJy70B2Y2rj5iRJ0fqaqnacdfJLVF1qrOGXJyrH\n"
    "a01bpmAvbMIQXSpgL7Oa/0smhWtpJIrde7v5synJnnJJRtWzX9/pZkBgpD6YZWcz\n"
    "1+JBiP/4Yz5Gwd1bXFEiiQjQuKUrOkxD7PVLXuOTSUYcQtatSkRny37uZaswJaIe\n"
    "cKj93sJldRfCeAiudMpW3t1wh+8NfH5ElMWLMBuL5yGu0q+4wrMQq6eBOIKt5BHh\n"
    "HMjzOxbfAgMBAAECggEANqfftGcmauqthQ5qNlvXCd4KUqzgl9/XxP5N2iFoPW8G\n"
    "1T31ItIxd+V3LAdjTARScYUgOXzcekZqbvwgzCGVRN7Gv7oqS3CvzIoBu7h8+3pJ\n"
    "M3tB2oPWh/z2ECti0z71J7Wp/Cw5LIsHp4sH+qAv1AdPs6KA1/10eqUCaIIBcOEk\n"
    "FwB2YocHej4AwYe2UEUurQCZV+4yflH9xi4RrEbqIa5l7CmJ83kYRDJiK3gSsfWE\n"
    "0N+l8PzGaUCCY9oqZNFO0RHDM3jRtM+Ue3ScYYsw//HHhvL46a4m6nrF34EcE9N2\n"
    "rlvzRT04/oZl/k2P7Eqkn1nOGtdk4GLcoFetKMqkoQKBgQDhhOu35/pQH0Y6rxB+\n"
    "CwifJzfPDGh+BbTBokP1YmKoNCYDu29ZugRYnpt4J3asa6njAqUz9votyK1bO2+p\n"
    "fjLXnzaYMgRShhKLweCuAJkSRCpCM3VopQ0g101+ITi6VV2YXGDFEkNwyC4yA0tn\n"
    "sWlx42tGbTvlqv7PuyShSNDivwKBgQDOFRRrSL/c83VC6oA/xWk3ooNEhsu6fnte\n"
    "8BuoLawe/nGjohSnueDidfi7TgxF72fyECUiXeAM29WMxF0nealo2OV/WxaTmCi5\n"
    "vynZ43beWeQ0IRZjOmqh0MS3NEh1PMgIDXi9p+6x0CqqucLYjQIQl7KufZN0uIb1\n"
    "BfM0fDhz4QKBgG9WMxV5NnAF8KMaOLcxdVE1iGz0wEWvRXzvQkPMDc7i5/2htKiE\n"
    "mI6zxyd7vDAFezry3GKaRQsDbuqCnm78OdeP5+EdmFqxjEhpMCZXbzrAYmiKhSVj\n"
    "juauxLhHaH09ldaZjMDecmMkwQG59Kk9wkQStaxwU0jgsaoWx0/E5jN7AoGBAIC7\n"
    "xEycXlX8s1SAvmqXu/loCE4HUj6GgjS1EuHE3g9ibMSGHBcGU0fD4APJZntNaQZa\n"
    "NYg5UhtWPBk6FOLy6fO4AezDjt/WHiKiGtekcv3E83vo615DAJdinW/ANj8eH+p/\n"
    "19vJip8C5ZROhDvYIeERkinUAgfYuV1YQSuZKX6hAoGAfQu5QUzs4tnmd9mo0L+Q\n"
    "m8q5E057Rp/M8nlDnVCmchlxcpJ/OrfdrnZD+JkEIEM9jict5x8WXoGbHdXw3Gbe\n"
    "V/WuWWW7S5Hfp1wWCDnQQ5Ie8DTXesfd/GqkOASJVui64b/XlICmsgnr6V8Ruud8\n"
    "HOgCtMkFdXe8zbySuBa8zZw=\n"
    "-----END PRIVATE KEY-----\n";

static const char pki_other_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDzJb3fn3wlJ+a/WT\n"
    "HkUimEelPX4EN7+W0KHOhpgILTyhRANCAARyHlkdB/OFovA5imNtu1Apv2KfJ1Gz\n"
    "eudBVqEHEkWlIa2gwJUiLVwQ8epkZLP9VM0+6/BU+HJ4PZDN4cMH6IZO\n"
    "-----END PRIVATE KEY-----\n";

static const char pki_wrap_crt[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIC0jCCAbqgAwIBAgICEAQwDQYJKoZIhvcNAQELBQAwFDESMBAGA1UEAwwJZnV6\n"
    "ei13cmFwMCAXDTAwMDEwMTAwMDAwMFoYDzIwOTkxMjMxMjM1OTU5WjAUMRIwEAYD\n"
    "VQQDDAlmdXp6LXdyYXAwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDQ\n"
    "HjOZz63lNdoTW+km8KzumkMrVUIsrDRGiNU1ZUwZVwBNlOGQ/yNJa2MQ7UyRcKG7\n"
    "E1Vza9ppUmJZ3XiFnk77eGttQ452lHsKPOJuSBgp4q8V61bLpUEPbkI9biZ3K6x6\n"
    "j/pGu5Is8cPbRbLt8oteiGQPSSx2Rtgcogk+Gw85yB56kk+NS7yPKLjK19oRzgHY\n"
    "1y+1WmI3qb9jv3nboF2ard/DhzXtbDgw6wUBHQSfRBKueq8UYLEXd8j85hCNF7CB\n"
    "+HEqB+us/ic0z5lreF+nNfyJ7yBzK43iNAimE+kYrfq9cPAJ4aymbHRCdw/4RxoQ\n"
    "vv45TjmsWjh0exRmfu9zAgMBAAGjLDAqMAkGA1UdEwQCMAAwHQYDVR0OBBYEFIDI\n"
    "J+bXg1/KZIZe37/+UVWDWOT2MA0GCSqGSIb3DQEBCwUAA4IBAQAZfPLDw+/xEzKq\n"
    "Js/TUpu9jwiN1WemvuxgBaVoKnGnEdCvEueZDKxf3Bs+M9oSalIKEEUa/zQyACbf\n"
    "Zni2WidK9E5M3b7bOzGf3I/s13FF9Zh9yyPHemY5P0/3CkM22st5Vkzsb9d02Fzt\n"
    "3mh/Gf8Ik6kLSTQ1q/WFujRbJpE+S1hw2vMQUp49en0aGjWOVSTmwbdx3TcA7Yrv\n"
    "TJmIda8KSWflVDGbMpjZo8ocAp7EVtEr1TtoSZmVsLHk626EWwAkiZ4Hg0lSsjPV\n"
    "yryfmwm+rN7B3vH388dZ5JmjlgLjYyMIO8eUs4e4DbEg4aexu+VHIDmL9qNJPIq7\n"
    "LY5zlc0t\n"
    "-----END CERTIFICATE-----\n";

static const char pki_wrap_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDQHjOZz63lNdoT\n"
    "W+km8KzumkMrVUIsrDRGiNU1ZUwZVwBNlOGQ/yNJa2MQ7UyRcKG7E1Vza9ppUmJZ\n"
    "3XiFnk77eGttQ452lHsKPOJuSBgp4q8V61bLpUEPbkI9biZ3K6x6j/pGu5Is8cPb\n"
    "RbLt8oteiGQPSSx2Rtgcogk+Gw85yB56kk+NS7yPKLjK19oRzgHY1y+1WmI3qb9j\n"
    "v3nboF2ard/DhzXtbDgw6wUBHQSfRBKueq8UYLEXd8j85hCNF7CB+HEqB+us/ic0\n"
    "z5lreF+nNfyJ7yBzK43iNAimE+kYrfq9cPAJ4aymbHRCdw/4RxoQvv45TjmsWjh0\n"
    "exRmfu9zAgMBAAECggEAHJiZxH+pyD3fChvt7GDTkjF2G0Uqw5Kh2DNDAIQ7sZun\n"
    "ugFEATVdduAfi5rfk3hjcJ4WdraSGzirtOdegRWgiqMgN7I5qAd85Io7HqYfU9oG\n"
    "7r8YfQDm8KTYyzIQbP1+RJT18bQiQLSzkbSBAnr6NXIONZ97UYEofr6xAGydafXa\n"
    "52ZwDm9UMPZCTB+0gnLTq/6a99kwzk90PrxzAYfJgPs8/wmIQQKr3rWhUKrwRJ8J\n"
    "6f0vbUPT6hAinFqz/geIsR4vfV2rgVZ/fmP4OxsRtL6jSjAZ5t5XibsyebA97e9x\n"
    "iSHfT3P7TGnpPNAmzQf13fSgOD3TZJ8Wboz0QnLrQQKBgQDv94f59U5zhIH/9LG7\n"
    "RgNLa6u9r085k09I7X2Ete63B2m1wmUClY5X51yNFQQXK7QHN3t055tSBLBrGuXn\n"
    "+k48kh8uJZ7VnAp5ztsKQtxf6DAaxprAPfLZMPH2XFH3ew0mHr8HAsAE4G1dPQz7\n"
    "GJh2dQuWC6Fv2dT07RrT3fm4EwKBgQDeBeqJw48/puHf6j917O4aVG3Mhwxc0qC4\n"
    "+sW0C9Rq/tG2Afivu0ioVDP6tslUQw3/Nhdvx01Inim9N/W+ZmUUSM4vjm1TYvfr\n"
    "AZ4PxIgwiPhn3av9iGzcYHFmNnZrdLV009EG7PC8mbLarMqNCVZB33XwcNJ3evJX\n"
    "zwicqLmXIQKBgQDufra/QAXzm5vUtu658PCvUdjD0mvMDlN7aMYaUvNpJ03x3r2j\n"
    "nt51ETYT5fJF0SLBFWx3GQVus8he+sHLGCQP4S5qH+vH46kpvORIQ4FhNJQy2HbP\n"
    "YAJvyEyDDOhOLhc4btBu+FW9wwwO4fF30c8d1GBqhS6yyu3za4ABWBmrzwKBgDSL\n"
    "ReRwqbgwsIgjkf1Ao2EL1ihvVZeqKWtdvehMXGst/0eJ0+cS9bEQrHSLSb5tWCSs\n"
    "EoPbsQicldg4JCp5ZTaVvGY42NrBM1ckvNmSc4C5CcDbD1cjMFA/atb70K7BoigR\n"
    "8Qgojxizb0adWhpiuU1Bq1HKAaVRLYVmc+1PaQzBAoGASPh2TXDKOL/WmMyY5B5k\n"
    "IEQPlRlrd/AHn13nBidyKU4LTewCAQQ/NUWuyKhtHWbkHS7KoGm9y62GHQ3BnBOT\n"
    "bKk4wbYnBXSfB1/432UfXVl2zdfPoTiHjFkGZb7QMWXYMdSXl6uwApmkukCBkO2S\n"
    "b/piNsdm8PDdMv8qQVfcLHo=\n"
    "-----END PRIVATE KEY-----\n";

static X509 *cert(apr_pool_t *p, const char *pem)
{
    apr_array_header_t *a;
    const char *err;

    if (cs_pem_read_certs(&a, p, pem, strlen(pem), &err) || a->nelts != 1) {
        fprintf(stderr, "fuzz_pki: %s\n", err ? err : "not one cert");
        abort();
    }
    return APR_ARRAY_IDX(a, 0, X509 *);
}

static EVP_PKEY *key(apr_pool_t *p, const char *pem)
{
    EVP_PKEY *k;
    const char *err;

    if (cs_pem_read_key(&k, p, pem, strlen(pem), &err)) {
        fprintf(stderr, "fuzz_pki: %s\n", err);
        abort();
    }
    return k;
}

void fuzz_pki_load(fuzz_pki_t *pki, apr_pool_t *p)
{
    pki->ca = cert(p, pki_ca_crt);
    pki->leaf = cert(p, pki_leaf_crt);
    pki->leaf_key = key(p, pki_leaf_key);
    pki->rleaf = cert(p, pki_rleaf_crt);
    pki->rleaf_key = key(p, pki_rleaf_key);
    pki->other_key = key(p, pki_other_key);
    pki->wrap = cert(p, pki_wrap_crt);
    pki->wrap_key = key(p, pki_wrap_key);
    pki->wrap_certs = apr_array_make(p, 1, sizeof(X509 *));
    pki->wrap_keys = apr_array_make(p, 1, sizeof(EVP_PKEY *));
    APR_ARRAY_PUSH(pki->wrap_certs, X509 *) = pki->wrap;
    APR_ARRAY_PUSH(pki->wrap_keys, EVP_PKEY *) = pki->wrap_key;
    pki->seal_keys = cs_seal_keys_derive(p, pki->wrap_keys);
    if (!pki->seal_keys) {
        fprintf(stderr, "fuzz_pki: no sealing key\n");
        abort();
    }
    pki->chain_pem = apr_pstrcat(p, pki_leaf_crt, pki_ca_crt, NULL);
    pki->rchain_pem = apr_pstrcat(p, pki_rleaf_crt, pki_ca_crt, NULL);
}
