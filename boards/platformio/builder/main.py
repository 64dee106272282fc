"""SCons build script of the lego2c-cortexm PlatformIO platform.

Builds the project's src/ plus the board's startup and console sources with the system
arm-none-eabi-gcc, links with the board's linker script and writes firmware.elf/.bin/.hex.
Everything board specific is read from the lego2c board file (boards/<name>.json, the
directory above this platform), which the PlatformIO board manifest names in build.lego2c_board.
"""

import json
import os

from SCons.Script import AlwaysBuild, Builder, Default, DefaultEnvironment

env = DefaultEnvironment()
platform = env.PioPlatform()
board_config = env.BoardConfig()

# realpath: the platform is installed as a symlink, and the board files live next to it.
BOARDS_ROOT = os.path.dirname(os.path.realpath(platform.get_dir()))
with open(os.path.join(BOARDS_ROOT, board_config.get("build.lego2c_board") + ".json")) as f:
    BOARD = json.load(f)

env.Replace(
    AR="arm-none-eabi-gcc-ar",
    AS="arm-none-eabi-as",
    CC="arm-none-eabi-gcc",
    CXX="arm-none-eabi-g++",
    OBJCOPY="arm-none-eabi-objcopy",
    RANLIB="arm-none-eabi-gcc-ranlib",
    SIZETOOL="arm-none-eabi-size",
    ARFLAGS=["rc"],
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
    LDSCRIPT_PATH=os.path.join(BOARDS_ROOT, BOARD["linker_script"]),
    # Used by PlatformIO's "Checking size" step against the manifest's upload limits.
    SIZEPROGREGEXP=r"^(?:\.isr_vector|\.text|\.rodata|\.ARM\.exidx|\.init_array|\.fini_array|\.data)\s+(\d+).*",
    SIZEDATAREGEXP=r"^(?:\.data|\.bss|\.heap_stack)\s+(\d+).*",
    SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    SIZEPRINTCMD="$SIZETOOL -B -d $SOURCES",
)

# -l flags go to LIBS (placed after the objects); everything else links as given.
ldflags = [flag for flag in BOARD["ldflags"] if not flag.startswith("-l")]
libs = [flag[2:] for flag in BOARD["ldflags"] if flag.startswith("-l")]
env.Append(
    # The same code-generation flags as the generated Makefile: fused multiply-adds, IEEE float16.
    CCFLAGS=BOARD["cflags"] + ["-ffunction-sections", "-fdata-sections", "-ffp-contract=fast", "-mfp16-format=ieee"],
    ASFLAGS=BOARD["cflags"],
    LINKFLAGS=BOARD["cflags"] + ldflags,
    CPPDEFINES=list(BOARD["defines"].items()) + [("LEGO_CLOCK_HZ", "%du" % BOARD["clock_hz"])],
    CPPPATH=[os.path.join(BOARDS_ROOT, "common")],
    # The board script INCLUDEs cortexm_sections.ld from its own directory.
    LIBPATH=[os.path.dirname(os.path.join(BOARDS_ROOT, BOARD["linker_script"]))],
    LIBS=libs,
    BUILDERS=dict(
        ElfToBin=Builder(
            action=env.VerboseAction("$OBJCOPY -O binary $SOURCES $TARGET", "Building $TARGET"),
            suffix=".bin",
        ),
        ElfToHex=Builder(
            action=env.VerboseAction("$OBJCOPY -O ihex $SOURCES $TARGET", "Building $TARGET"),
            suffix=".hex",
        ),
    ),
)

# The board's startup and console sources are compiled into the program like project sources.
env.BuildSources(
    os.path.join("$BUILD_DIR", "lego2c_board"),
    os.path.join(BOARDS_ROOT, "common"),
    src_filter=["-<*>"] + ["+<%s>" % os.path.basename(src) for src in BOARD["sources"]],
)

target_elf = env.BuildProgram()
target_bin = env.ElfToBin(os.path.join("$BUILD_DIR", "${PROGNAME}"), target_elf)
target_hex = env.ElfToHex(os.path.join("$BUILD_DIR", "${PROGNAME}"), target_elf)
env.Depends(target_bin, "checkprogsize")

target_buildprog = env.Alias("buildprog", [target_bin, target_hex])
target_size = env.Alias("size", target_elf, env.VerboseAction("$SIZEPRINTCMD", "Calculating size $SOURCE"))
AlwaysBuild(target_size)

Default([target_buildprog, target_size])
