#!/usr/bin/perl
# config_fields.pl: every field of each module's server configuration is
# initialised "unset" and merged.
#
# For each mod_*/ directory, the module record (STANDARD20_MODULE_STUFF)
# names the create and merge functions of the server configuration; the
# type that the create function allocates is the configuration.  Then:
#   * a module with a create function has a merge function;
#   * every field of the type is taken from the base in the merge
#     function (base->field, or the first argument of a MERGE-named
#     macro), so a virtual host inherits what it does not set;
#   * every field that is not a pointer is set in the create function (its
#     "unset" marker, -1 say), unless its comment says "0: unset" (the
#     zero apr_pcalloc() left is the marker); a pointer's marker is NULL.
# A struct field that is a function of the others can be exempt with the
# comment "not merged: <why>" on its line.
#
# Prints "ok"/"not ok" lines and "N passed, M failed"; exits non-zero on
# any failure.  Run from the top of the tree or with $srcdir set.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Lint;

my $top = top();

# The body of function NAME in TEXT (from its "{" to the matching "}").
sub body_of {
    my ($text, $name) = @_;
    return undef unless $text =~ /^[^\n;]*\b\Q$name\E\s*\([^;{]*\)\s*\{/mg;
    my $start = pos($text) - 1;
    my $depth = 0;
    for (my $i = $start; $i < length $text; $i++) {
        my $c = substr($text, $i, 1);
        $depth++ if $c eq '{';
        if ($c eq '}' && --$depth == 0) {
            return substr($text, $start, $i - $start + 1);
        }
    }
    return undef;
}

# Fields of "typedef struct {...} TYPE;" or "struct TYPE {...};":
# [name, is_pointer, comment].
sub fields_of {
    my ($text, $type) = @_;
    my $decl;
    if ($text =~ /typedef\s+struct\s*\w*\s*\{([^{}]*)\}\s*\Q$type\E\s*;/s) {
        $decl = $1;
    }
    elsif ($type =~ /^(\w+)_t$/ && $text =~ /struct\s+\Q$type\E\s*\{([^{}]*)\};/s) {
        $decl = $1;
    }
    return undef unless defined $decl;
    my @fields;
    for my $line (split /\n/, $decl) {
        my $comment = $line =~ m{/\*(.*?)(\*/|$)} ? $1 : '';
        (my $code = $line) =~ s{/\*.*$}{};
        $code =~ s{^\s*\*.*$}{};            # continuation of a comment
        next unless $code =~ /;/;
        $code =~ s/;.*//;
        $code =~ s/\[[^\]]*\]//g;
        # "const char *a, *b" -> a (ptr), b (ptr)
        my ($base, @names) = ($code =~ /^\s*(.*?)(\**\s*\w+(?:\s*,\s*\**\s*\w+)*)\s*$/);
        next unless defined $base;
        for my $n (split /,/, $names[0]) {
            my $ptr = $n =~ /\*/ ? 1 : 0;
            $n =~ s/[\s*]//g;
            push @fields, [$n, $ptr, $comment];
        }
    }
    return \@fields;
}

for my $dir (sort glob("$top/mod_*")) {
    next unless -d $dir;
    my $mod = $dir;
    $mod =~ s{.*/}{};
    my $text = join "\n", map { slurp($_) } sort glob("$dir/*.[ch]");
    next unless $text =~ /STANDARD20_MODULE_STUFF\s*,([^}]*)\}/s;
    my @slots = map { s{/\*.*?\*/}{}gsr =~ s/^\s+|\s+$//gr } split /,/, $1;
    my ($create, $merge) = @slots[2, 3];
    next if !defined $create || $create eq 'NULL';
    ok(scalar($merge && $merge ne 'NULL'), "$mod: has a server-config merge function");
    next if !$merge || $merge eq 'NULL';

    my $cbody = body_of($text, $create);
    my $mbody = body_of($text, $merge);
    ok(defined($cbody), "$mod: $create found");
    ok(defined($mbody), "$mod: $merge found");
    next unless defined $cbody && defined $mbody;
    my ($type) = $cbody =~ /(\w+)\s*\*\s*\w+\s*=\s*apr_pcalloc\s*\(/;
    ok(defined($type), "$mod: $create allocates a named type");
    next unless defined $type;
    my $fields = fields_of($text, $type);
    ok(defined $fields && scalar(@$fields) > 0, "$mod: fields of $type found");
    next unless $fields;
    for my $f (@$fields) {
        my ($name, $ptr, $comment) = @$f;
        next if $comment =~ /not merged:/;
        ok(scalar($mbody =~ /\bbase(?:->|\.)\Q$name\E\b|\b\w*MERGE\w*\s*\(\s*\Q$name\E\b/), "$mod: $type.$name merged in $merge");
        next if $ptr;
        ok(scalar($cbody =~ /(?:->|\.)\Q$name\E\b/)
           || scalar($comment =~ /\b0: unset\b/),
           "$mod: $type.$name set unset in $create (or commented '0: unset')");
    }
}

done();
