# Turns IN (a text file) into OUT, a C file defining
#   const unsigned char shmprov_default_profile[]; const size_t shmprov_default_profile_len;
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n  " body "${body}")
file(WRITE "${OUT}" "/* Generated from ${IN}; do not edit. */\n#include <stddef.h>\nconst unsigned char shmprov_default_profile[] = {\n  ${body}0x00\n};\nconst size_t shmprov_default_profile_len = ${len};\n")
