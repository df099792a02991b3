# Postern build. `make` builds bin/ and libexec/; `make check` runs every test;
# `make run` starts the dev suite; `make bench` runs the benchmarks.
# SAN=1 builds with ASan+UBSan into san/ (objects obj-san/) so both trees coexist.

PREFIX  ?= /usr/local
SAN     ?= 0
CC      ?= cc
PKGS     = libevent libevent_openssl openssl libcrypt libpcre2-8 libidn2
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# libunbound (lib/dns/) is linked only into the programs that resolve names
DNS_PKGS   = libunbound
PKG_CFLAGS += $(shell pkg-config --cflags $(DNS_PKGS) 2>/dev/null)
DNS_LIBS   := $(shell pkg-config --libs $(DNS_PKGS) 2>/dev/null)
DNS_USERS  = smtpd smtp cleanup
# libmicrohttpd (the metrics endpoint, master/master_http.c) only into master
MHD_PKGS   = libmicrohttpd
PKG_CFLAGS += $(shell pkg-config --cflags $(MHD_PKGS) 2>/dev/null)
MHD_LIBS   := $(shell pkg-config --libs $(MHD_PKGS) 2>/dev/null)
# libopendkim (lib/dkim/: DKIM verify and sign) only into cleanup and bin/postern;
# its header is included as <opendkim/dkim.h> (no -I: lib/dkim has a dkim.h-free API)
DKIM_LIBS  := $(shell pkg-config --libs opendkim 2>/dev/null)
# libopendmarc (lib/dmarc/: DMARC record parsing, the public suffix list)
# only into cleanup and the CLI
DMARC_LIBS = -lopendmarc
# libcurl (lib/sts/: the MTA-STS policy fetch) only into the smtp agent
STS_PKGS   = libcurl
PKG_CFLAGS += $(shell pkg-config --cflags $(STS_PKGS) 2>/dev/null)
STS_LIBS   := $(shell pkg-config --libs $(STS_PKGS) 2>/dev/null)

ifeq ($(SAN),1)
OUT     = san
OBJ     = obj-san
SANFL   = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     = -O1 -g
else
OUT     = .
OBJ     = obj
SANFL   =
OPT     = -O2 -g
endif

CFLAGS  += -std=gnu11 $(OPT) -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -Wformat=2 -Wno-format-nonliteral -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 \
           -fstack-protector-strong -Ilib -I$(OBJ)/gen $(PKG_CFLAGS) $(SANFL) -MMD -MP
LDFLAGS += $(SANFL)
LIBS     = $(PKG_LIBS) -lcdb -lpthread

# lib/<concern>/: shared code, one folder per concern (mk/layout.py: layers)
LIB_SRC  = $(filter-out lib/rules/%,$(wildcard lib/*/*.c))
LIB_OBJ  = $(LIB_SRC:%.c=$(OBJ)/%.o)
LIBA     = $(OBJ)/libpostern.a
# the rule language (lib/rules/) is an archive of its own, linked only into
# the programs that compile or run rules: filter and bin/postern (and the
# tests that need it). t/integ/test_layout.py checks the other daemons.
RULES_SRC = $(wildcard lib/rules/*.c)
RULES_OBJ = $(RULES_SRC:%.c=$(OBJ)/%.o)
RULESA    = $(OBJ)/librules.a

# postdrop is no daemon but sendmail's setgid helper: built the same way
DAEMONS  = master smtpd cleanup pickup qmgr delivery smtp pipe filter postdrop
# a daemon is built only once its folder has sources
BUILT_DAEMONS = $(foreach d,$(DAEMONS),$(if $(wildcard $(d)/*.c),$(d)))
DAEMON_BINS = $(BUILT_DAEMONS:%=$(OUT)/libexec/%)
CLI_BINS    = $(OUT)/bin/postern
CLI_LINKS   = $(OUT)/bin/sendmail $(OUT)/bin/mailq $(OUT)/bin/newaliases

.PHONY: all deps depcheck check unit integ run bench install install-sendmail uninstall-sendmail clean fuzz fuzz-run check-asan FORCE
all: $(DAEMON_BINS) $(CLI_BINS) $(CLI_LINKS)

# PREFIX is compiled in (the default config path) through a generated header
# that changes only when PREFIX does, so `make install PREFIX=...` after a
# plain `make` rebuilds and relinks what depends on it. The version header
# (VERSION + git revision) is read only by cli_info.c.
update_gen = mkdir -p $(dir $@) && { $(1); } > $@.tmp && \
	if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
$(OBJ)/gen/postern_prefix.h: FORCE
	@$(call update_gen,printf '#define POSTERN_PREFIX "%s"\n' '$(PREFIX)')
$(OBJ)/gen/postern_version.h: FORCE
	@$(call update_gen,printf '#define POSTERN_VERSION "%s"\n#define POSTERN_BUILD "%s%s"\n' \
	  "$$(cat VERSION)" "$$(git rev-parse --short HEAD 2>/dev/null || echo release)" \
	  '$(if $(filter 1,$(SAN)), asan+ubsan)')
$(OBJ)/lib/config/config.o: $(OBJ)/gen/postern_prefix.h
$(OBJ)/cli/cli_info.o: $(OBJ)/gen/postern_version.h

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# Makefile: a file moved between the archives rebuilds both
$(LIBA): $(LIB_OBJ) Makefile
	@mkdir -p $(dir $@)
	rm -f $@; ar rcs $@ $(filter %.o,$^)

$(RULESA): $(RULES_OBJ) Makefile
	@mkdir -p $(dir $@)
	rm -f $@; ar rcs $@ $(filter %.o,$^)

.SECONDARY:
.SECONDEXPANSION:
objs = $(patsubst %.c,$(OBJ)/%.o,$(wildcard $(1)/*.c))
$(OUT)/libexec/%: $$(call objs,$$*) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(filter $(RULESA),$^) $(LIBA) $(LIBS)
$(OUT)/libexec/filter: $(RULESA)
$(DNS_USERS:%=$(OUT)/libexec/%): LIBS += $(DNS_LIBS)
$(OUT)/libexec/smtp: LIBS += $(STS_LIBS)
$(OUT)/libexec/master: LIBS += $(MHD_LIBS)
$(OUT)/libexec/cleanup: LIBS += $(DKIM_LIBS) $(DMARC_LIBS)

$(OUT)/bin/postern: $$(call objs,cli) $(RULESA) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(RULESA) $(LIBA) $(LIBS) $(DNS_LIBS) $(DKIM_LIBS) $(DMARC_LIBS)

# sendmail, mailq and newaliases: the postern binary under other names (argv[0])
$(OUT)/bin/sendmail $(OUT)/bin/mailq $(OUT)/bin/newaliases: $(OUT)/bin/postern
	ln -sf postern $@

# ---- tests ---------------------------------------------------------------
UNIT_SRC  = $(wildcard t/unit/test_*.c)
UNIT_BINS = $(UNIT_SRC:t/unit/%.c=$(OBJ)/t/%)
$(OBJ)/t/%: t/unit/%.c $(RULESA) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(RULESA) $(LIBA) $(LIBS) $(DNS_LIBS) $(STS_LIBS) $(DKIM_LIBS) $(DMARC_LIBS) $(shell pkg-config --libs cmocka)

deps:
	@./mk/deps.sh

# every program/module the tests load comes from mk/deps.sh's closure
depcheck:
	@/usr/bin/python3 mk/depcheck.py --cache $(OBJ)/depcheck.cache

unit: $(UNIT_BINS)
	@./t/run-unit.sh $(UNIT_BINS)

integ: all
	@POSTERN_ROOT=$(abspath $(OUT)) ./t/run-integ.sh

check: deps
	$(MAKE) depcheck
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integ

check-asan: deps
	$(MAKE) SAN=1 all
	$(MAKE) SAN=1 unit
	$(MAKE) SAN=1 integ

# ---- fuzzing (clang + libFuzzer) -----------------------------------------
FUZZ_SRC  = $(wildcard t/fuzz/fuzz_*.c)
FUZZ_BINS = $(FUZZ_SRC:t/fuzz/%.c=obj-fuzz/%)
FUZZ_LIB_OBJ = $(LIB_SRC:%.c=obj-fuzz/%.o) $(RULES_SRC:%.c=obj-fuzz/%.o)
FUZZ_CFLAGS = -std=gnu11 -g -O1 -D_GNU_SOURCE -Ilib $(PKG_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined
obj-fuzz/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c -o $@ $<
obj-fuzz/fuzz_%: t/fuzz/fuzz_%.c $(FUZZ_LIB_OBJ)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJ) $(LIBS) $(DNS_LIBS) $(STS_LIBS) $(DKIM_LIBS) $(DMARC_LIBS)
fuzz: $(FUZZ_BINS)
fuzz-run: fuzz
	@./t/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

# ---- running -------------------------------------------------------------
run: deps all
	@./conf/dev-setup.sh
	$(OUT)/bin/postern -c conf/dev.conf run

bench: deps all
	@./bench/run.sh

install: all
	./mk/install.sh "$(DESTDIR)" "$(PREFIX)" "$(OUT)"

# Make the installed Postern the system's sendmail, mailq and newaliases
# (/usr/sbin/sendmail, /usr/lib/sendmail...; a packaged MTA's files are
# diverted, see mk/sendmail-links.sh); `make uninstall-sendmail` undoes it.
install-sendmail:
	./mk/sendmail-links.sh "$(PREFIX)"

uninstall-sendmail:
	./mk/sendmail-links.sh --remove "$(PREFIX)"

clean:
	rm -rf obj obj-san obj-fuzz bin libexec san

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
