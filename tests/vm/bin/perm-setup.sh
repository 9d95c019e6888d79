#!/bin/sh
# Makes the file (and directory) a permission scenario runs, as its unit's
# ExecStartPre=+ (as root, outside the unit's User=): perm-setup.sh SCENARIO.
set -eu
script() { # path mode owner:group
  printf '#!/bin/sh\necho "%s ran as $(id)"\n' "$1" > "$1"
  chown "$3" "$1"
  chmod "$2" "$1"
}
# An access ACL (system.posix_acl_access, the kernel's xattr format: version 2, then
# tag/perm/id entries sorted by tag and id) set with setxattr(2) from perl: the image
# has no acl tools. Arguments: path, then user_obj, nobody's, group_obj, mask, other perms.
acl_nobody() {
  perl -e '
    my ($path, $uo, $u, $go, $m, $o) = @ARGV;
    my ($name, $none) = ("system.posix_acl_access", 0xffffffff);
    my $v = pack("V", 2) . pack("vvV", 1, $uo, $none) . pack("vvV", 2, $u, 65534)
      . pack("vvV", 4, $go, $none) . pack("vvV", 16, $m, $none) . pack("vvV", 32, $o, $none);
    syscall(188, $path, $name, $v, length($v), 0) == 0
      or die "setxattr $path: $!\n";
  ' "$@"
}
b=/usr/local/bin
case "$1" in
  permuser) script $b/permuser.sh 0700 root:root ;;
  permdir)
    mkdir -p /opt/private
    chmod 0700 /opt/private
    script /opt/private/permdir.sh 0755 root:root ;;
  permgroup) script $b/permgroup.sh 0750 root:staff ;;
  permgroupok) script $b/permgroupok.sh 0750 root:staff ;;
  permgidok) script $b/permgidok.sh 0750 root:staff ;;
  permdynamic) script $b/permdynamic.sh 0700 root:root ;;
  # 0755, but nobody's own entry grants nothing: the mode says "others may", the ACL no.
  permacl) script $b/permacl.sh 0755 root:root; acl_nobody $b/permacl.sh 7 0 5 5 5 ;;
  # 0700, but nobody's own entry grants r-x.
  permaclok) script $b/permaclok.sh 0700 root:root; acl_nobody $b/permaclok.sh 7 5 0 5 0 ;;
  *) echo "perm-setup.sh: no scenario $1" >&2; exit 2 ;;
esac
