/* Keeps the support library non-empty. */
typedef int sg_test_support_empty_t;
