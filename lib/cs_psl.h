/*
 * cs_psl.h: the registered domain of a name, from the Public Suffix List
 * through libpsl (the list Debian ships, or libpsl's built-in one): what
 * CAs count their per-domain limits by ("www.shop.example.co.uk" ->
 * "example.co.uk").
 *
 * Pure code: APR and libpsl; thread-safe (the list is loaded once).
 */
#ifndef CS_PSL_H
#define CS_PSL_H

#include <apr_pools.h>

/**
 * The registered domain of domain (lower case; a leading "*." ignored):
 * the public suffix and one label before it.  domain itself when it has
 * none (it is a public suffix, or no list could be loaded).
 */
const char *cs_psl_registered(apr_pool_t *p, const char *domain);

#endif /* CS_PSL_H */
