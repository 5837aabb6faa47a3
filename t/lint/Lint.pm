# Lint.pm: what the source checks under t/lint share: the tree's top
# ($srcdir, else "."), ok/not ok lines with a count, and reading a file.
package Lint;
use strict;
use warnings;
use Exporter 'import';
our @EXPORT = qw(top ok slurp done);

my ($pass, $fail) = (0, 0);

sub top { return $ENV{srcdir} // '.'; }

sub ok {
    my ($cond, $what) = @_;
    if ($cond) { $pass++; print "ok - $what\n"; }
    else       { $fail++; print "not ok - $what\n"; }
    return $cond;
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    return scalar <$fh>;
}

# Prints the summary line and exits: non-zero if any check failed.
sub done {
    print "$pass passed, $fail failed\n";
    exit($fail ? 1 : 0);
}

1;
