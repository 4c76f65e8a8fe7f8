// GPT-2 byte-level BPE tokenizer: JSON/merges parsing, hand-written pre-tokenizer, BPE.
//
// Contract: see bpe_tokenizer.h. The Unicode tables below were generated with Node.js 20
// (ICU, Unicode 17) from /\p{L}/u, /\p{N}/u and /\p{White_Space}/u, one closed range per
// entry, sorted; regenerate them the same way rather than editing by hand.
#include "runtime/data/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "runtime/core/error.h"

namespace tandem {
namespace {

struct CodeRange {
  uint32_t lo, hi;
};

// clang-format off
constexpr CodeRange kLetterRanges[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xAA, 0xAA}, {0xB5, 0xB5}, {0xBA, 0xBA}, {0xC0, 0xD6},
    {0xD8, 0xF6}, {0xF8, 0x2C1}, {0x2C6, 0x2D1}, {0x2E0, 0x2E4}, {0x2EC, 0x2EC}, {0x2EE, 0x2EE},
    {0x370, 0x374}, {0x376, 0x377}, {0x37A, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A},
    {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x559, 0x559}, {0x560, 0x588}, {0x5D0, 0x5EA}, {0x5EF, 0x5F2}, {0x620, 0x64A}, {0x66E, 0x66F},
    {0x671, 0x6D3}, {0x6D5, 0x6D5}, {0x6E5, 0x6E6}, {0x6EE, 0x6EF}, {0x6FA, 0x6FC}, {0x6FF, 0x6FF},
    {0x710, 0x710}, {0x712, 0x72F}, {0x74D, 0x7A5}, {0x7B1, 0x7B1}, {0x7CA, 0x7EA}, {0x7F4, 0x7F5},
    {0x7FA, 0x7FA}, {0x800, 0x815}, {0x81A, 0x81A}, {0x824, 0x824}, {0x828, 0x828}, {0x840, 0x858},
    {0x860, 0x86A}, {0x870, 0x887}, {0x889, 0x88F}, {0x8A0, 0x8C9}, {0x904, 0x939}, {0x93D, 0x93D},
    {0x950, 0x950}, {0x958, 0x961}, {0x971, 0x980}, {0x985, 0x98C}, {0x98F, 0x990}, {0x993, 0x9A8},
    {0x9AA, 0x9B0}, {0x9B2, 0x9B2}, {0x9B6, 0x9B9}, {0x9BD, 0x9BD}, {0x9CE, 0x9CE}, {0x9DC, 0x9DD},
    {0x9DF, 0x9E1}, {0x9F0, 0x9F1}, {0x9FC, 0x9FC}, {0xA05, 0xA0A}, {0xA0F, 0xA10}, {0xA13, 0xA28},
    {0xA2A, 0xA30}, {0xA32, 0xA33}, {0xA35, 0xA36}, {0xA38, 0xA39}, {0xA59, 0xA5C}, {0xA5E, 0xA5E},
    {0xA72, 0xA74}, {0xA85, 0xA8D}, {0xA8F, 0xA91}, {0xA93, 0xAA8}, {0xAAA, 0xAB0}, {0xAB2, 0xAB3},
    {0xAB5, 0xAB9}, {0xABD, 0xABD}, {0xAD0, 0xAD0}, {0xAE0, 0xAE1}, {0xAF9, 0xAF9}, {0xB05, 0xB0C},
    {0xB0F, 0xB10}, {0xB13, 0xB28}, {0xB2A, 0xB30}, {0xB32, 0xB33}, {0xB35, 0xB39}, {0xB3D, 0xB3D},
    {0xB5C, 0xB5D}, {0xB5F, 0xB61}, {0xB71, 0xB71}, {0xB83, 0xB83}, {0xB85, 0xB8A}, {0xB8E, 0xB90},
    {0xB92, 0xB95}, {0xB99, 0xB9A}, {0xB9C, 0xB9C}, {0xB9E, 0xB9F}, {0xBA3, 0xBA4}, {0xBA8, 0xBAA},
    {0xBAE, 0xBB9}, {0xBD0, 0xBD0}, {0xC05, 0xC0C}, {0xC0E, 0xC10}, {0xC12, 0xC28}, {0xC2A, 0xC39},
    {0xC3D, 0xC3D}, {0xC58, 0xC5A}, {0xC5C, 0xC5D}, {0xC60, 0xC61}, {0xC80, 0xC80}, {0xC85, 0xC8C},
    {0xC8E, 0xC90}, {0xC92, 0xCA8}, {0xCAA, 0xCB3}, {0xCB5, 0xCB9}, {0xCBD, 0xCBD}, {0xCDC, 0xCDE},
    {0xCE0, 0xCE1}, {0xCF1, 0xCF2}, {0xD04, 0xD0C}, {0xD0E, 0xD10}, {0xD12, 0xD3A}, {0xD3D, 0xD3D},
    {0xD4E, 0xD4E}, {0xD54, 0xD56}, {0xD5F, 0xD61}, {0xD7A, 0xD7F}, {0xD85, 0xD96}, {0xD9A, 0xDB1},
    {0xDB3, 0xDBB}, {0xDBD, 0xDBD}, {0xDC0, 0xDC6}, {0xE01, 0xE30}, {0xE32, 0xE33}, {0xE40, 0xE46},
    {0xE81, 0xE82}, {0xE84, 0xE84}, {0xE86, 0xE8A}, {0xE8C, 0xEA3}, {0xEA5, 0xEA5}, {0xEA7, 0xEB0},
    {0xEB2, 0xEB3}, {0xEBD, 0xEBD}, {0xEC0, 0xEC4}, {0xEC6, 0xEC6}, {0xEDC, 0xEDF}, {0xF00, 0xF00},
    {0xF40, 0xF47}, {0xF49, 0xF6C}, {0xF88, 0xF8C}, {0x1000, 0x102A}, {0x103F, 0x103F},
    {0x1050, 0x1055}, {0x105A, 0x105D}, {0x1061, 0x1061}, {0x1065, 0x1066}, {0x106E, 0x1070},
    {0x1075, 0x1081}, {0x108E, 0x108E}, {0x10A0, 0x10C5}, {0x10C7, 0x10C7}, {0x10CD, 0x10CD},
    {0x10D0, 0x10FA}, {0x10FC, 0x1248}, {0x124A, 0x124D}, {0x1250, 0x1256}, {0x1258, 0x1258},
    {0x125A, 0x125D}, {0x1260, 0x1288}, {0x128A, 0x128D}, {0x1290, 0x12B0}, {0x12B2, 0x12B5},
    {0x12B8, 0x12BE}, {0x12C0, 0x12C0}, {0x12C2, 0x12C5}, {0x12C8, 0x12D6}, {0x12D8, 0x1310},
    {0x1312, 0x1315}, {0x1318, 0x135A}, {0x1380, 0x138F}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD},
    {0x1401, 0x166C}, {0x166F, 0x167F}, {0x1681, 0x169A}, {0x16A0, 0x16EA}, {0x16F1, 0x16F8},
    {0x1700, 0x1711}, {0x171F, 0x1731}, {0x1740, 0x1751}, {0x1760, 0x176C}, {0x176E, 0x1770},
    {0x1780, 0x17B3}, {0x17D7, 0x17D7}, {0x17DC, 0x17DC}, {0x1820, 0x1878}, {0x1880, 0x1884},
    {0x1887, 0x18A8}, {0x18AA, 0x18AA}, {0x18B0, 0x18F5}, {0x1900, 0x191E}, {0x1950, 0x196D},
    {0x1970, 0x1974}, {0x1980, 0x19AB}, {0x19B0, 0x19C9}, {0x1A00, 0x1A16}, {0x1A20, 0x1A54},
    {0x1AA7, 0x1AA7}, {0x1B05, 0x1B33}, {0x1B45, 0x1B4C}, {0x1B83, 0x1BA0}, {0x1BAE, 0x1BAF},
    {0x1BBA, 0x1BE5}, {0x1C00, 0x1C23}, {0x1C4D, 0x1C4F}, {0x1C5A, 0x1C7D}, {0x1C80, 0x1C8A},
    {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1CE9, 0x1CEC}, {0x1CEE, 0x1CF3}, {0x1CF5, 0x1CF6},
    {0x1CFA, 0x1CFA}, {0x1D00, 0x1DBF}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D},
    {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4},
    {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4},
    {0x1FF6, 0x1FFC}, {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C}, {0x2102, 0x2102},
    {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124},
    {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2139}, {0x213C, 0x213F},
    {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0x2D00, 0x2D25}, {0x2D27, 0x2D27}, {0x2D2D, 0x2D2D}, {0x2D30, 0x2D67},
    {0x2D6F, 0x2D6F}, {0x2D80, 0x2D96}, {0x2DA0, 0x2DA6}, {0x2DA8, 0x2DAE}, {0x2DB0, 0x2DB6},
    {0x2DB8, 0x2DBE}, {0x2DC0, 0x2DC6}, {0x2DC8, 0x2DCE}, {0x2DD0, 0x2DD6}, {0x2DD8, 0x2DDE},
    {0x2E2F, 0x2E2F}, {0x3005, 0x3006}, {0x3031, 0x3035}, {0x303B, 0x303C}, {0x3041, 0x3096},
    {0x309D, 0x309F}, {0x30A1, 0x30FA}, {0x30FC, 0x30FF}, {0x3105, 0x312F}, {0x3131, 0x318E},
    {0x31A0, 0x31BF}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF}, {0x4E00, 0xA48C}, {0xA4D0, 0xA4FD},
    {0xA500, 0xA60C}, {0xA610, 0xA61F}, {0xA62A, 0xA62B}, {0xA640, 0xA66E}, {0xA67F, 0xA69D},
    {0xA6A0, 0xA6E5}, {0xA717, 0xA71F}, {0xA722, 0xA788}, {0xA78B, 0xA7DC}, {0xA7F1, 0xA801},
    {0xA803, 0xA805}, {0xA807, 0xA80A}, {0xA80C, 0xA822}, {0xA840, 0xA873}, {0xA882, 0xA8B3},
    {0xA8F2, 0xA8F7}, {0xA8FB, 0xA8FB}, {0xA8FD, 0xA8FE}, {0xA90A, 0xA925}, {0xA930, 0xA946},
    {0xA960, 0xA97C}, {0xA984, 0xA9B2}, {0xA9CF, 0xA9CF}, {0xA9E0, 0xA9E4}, {0xA9E6, 0xA9EF},
    {0xA9FA, 0xA9FE}, {0xAA00, 0xAA28}, {0xAA40, 0xAA42}, {0xAA44, 0xAA4B}, {0xAA60, 0xAA76},
    {0xAA7A, 0xAA7A}, {0xAA7E, 0xAAAF}, {0xAAB1, 0xAAB1}, {0xAAB5, 0xAAB6}, {0xAAB9, 0xAABD},
    {0xAAC0, 0xAAC0}, {0xAAC2, 0xAAC2}, {0xAADB, 0xAADD}, {0xAAE0, 0xAAEA}, {0xAAF2, 0xAAF4},
    {0xAB01, 0xAB06}, {0xAB09, 0xAB0E}, {0xAB11, 0xAB16}, {0xAB20, 0xAB26}, {0xAB28, 0xAB2E},
    {0xAB30, 0xAB5A}, {0xAB5C, 0xAB69}, {0xAB70, 0xABE2}, {0xAC00, 0xD7A3}, {0xD7B0, 0xD7C6},
    {0xD7CB, 0xD7FB}, {0xF900, 0xFA6D}, {0xFA70, 0xFAD9}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17},
    {0xFB1D, 0xFB1D}, {0xFB1F, 0xFB28}, {0xFB2A, 0xFB36}, {0xFB38, 0xFB3C}, {0xFB3E, 0xFB3E},
    {0xFB40, 0xFB41}, {0xFB43, 0xFB44}, {0xFB46, 0xFBB1}, {0xFBD3, 0xFD3D}, {0xFD50, 0xFD8F},
    {0xFD92, 0xFDC7}, {0xFDF0, 0xFDFB}, {0xFE70, 0xFE74}, {0xFE76, 0xFEFC}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0xFF66, 0xFFBE}, {0xFFC2, 0xFFC7}, {0xFFCA, 0xFFCF}, {0xFFD2, 0xFFD7},
    {0xFFDA, 0xFFDC}, {0x10000, 0x1000B}, {0x1000D, 0x10026}, {0x10028, 0x1003A},
    {0x1003C, 0x1003D}, {0x1003F, 0x1004D}, {0x10050, 0x1005D}, {0x10080, 0x100FA},
    {0x10280, 0x1029C}, {0x102A0, 0x102D0}, {0x10300, 0x1031F}, {0x1032D, 0x10340},
    {0x10342, 0x10349}, {0x10350, 0x10375}, {0x10380, 0x1039D}, {0x103A0, 0x103C3},
    {0x103C8, 0x103CF}, {0x10400, 0x1049D}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10500, 0x10527}, {0x10530, 0x10563}, {0x10570, 0x1057A}, {0x1057C, 0x1058A},
    {0x1058C, 0x10592}, {0x10594, 0x10595}, {0x10597, 0x105A1}, {0x105A3, 0x105B1},
    {0x105B3, 0x105B9}, {0x105BB, 0x105BC}, {0x105C0, 0x105F3}, {0x10600, 0x10736},
    {0x10740, 0x10755}, {0x10760, 0x10767}, {0x10780, 0x10785}, {0x10787, 0x107B0},
    {0x107B2, 0x107BA}, {0x10800, 0x10805}, {0x10808, 0x10808}, {0x1080A, 0x10835},
    {0x10837, 0x10838}, {0x1083C, 0x1083C}, {0x1083F, 0x10855}, {0x10860, 0x10876},
    {0x10880, 0x1089E}, {0x108E0, 0x108F2}, {0x108F4, 0x108F5}, {0x10900, 0x10915},
    {0x10920, 0x10939}, {0x10940, 0x10959}, {0x10980, 0x109B7}, {0x109BE, 0x109BF},
    {0x10A00, 0x10A00}, {0x10A10, 0x10A13}, {0x10A15, 0x10A17}, {0x10A19, 0x10A35},
    {0x10A60, 0x10A7C}, {0x10A80, 0x10A9C}, {0x10AC0, 0x10AC7}, {0x10AC9, 0x10AE4},
    {0x10B00, 0x10B35}, {0x10B40, 0x10B55}, {0x10B60, 0x10B72}, {0x10B80, 0x10B91},
    {0x10C00, 0x10C48}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x10D00, 0x10D23},
    {0x10D4A, 0x10D65}, {0x10D6F, 0x10D85}, {0x10E80, 0x10EA9}, {0x10EB0, 0x10EB1},
    {0x10EC2, 0x10EC7}, {0x10F00, 0x10F1C}, {0x10F27, 0x10F27}, {0x10F30, 0x10F45},
    {0x10F70, 0x10F81}, {0x10FB0, 0x10FC4}, {0x10FE0, 0x10FF6}, {0x11003, 0x11037},
    {0x11071, 0x11072}, {0x11075, 0x11075}, {0x11083, 0x110AF}, {0x110D0, 0x110E8},
    {0x11103, 0x11126}, {0x11144, 0x11144}, {0x11147, 0x11147}, {0x11150, 0x11172},
    {0x11176, 0x11176}, {0x11183, 0x111B2}, {0x111C1, 0x111C4}, {0x111DA, 0x111DA},
    {0x111DC, 0x111DC}, {0x11200, 0x11211}, {0x11213, 0x1122B}, {0x1123F, 0x11240},
    {0x11280, 0x11286}, {0x11288, 0x11288}, {0x1128A, 0x1128D}, {0x1128F, 0x1129D},
    {0x1129F, 0x112A8}, {0x112B0, 0x112DE}, {0x11305, 0x1130C}, {0x1130F, 0x11310},
    {0x11313, 0x11328}, {0x1132A, 0x11330}, {0x11332, 0x11333}, {0x11335, 0x11339},
    {0x1133D, 0x1133D}, {0x11350, 0x11350}, {0x1135D, 0x11361}, {0x11380, 0x11389},
    {0x1138B, 0x1138B}, {0x1138E, 0x1138E}, {0x11390, 0x113B5}, {0x113B7, 0x113B7},
    {0x113D1, 0x113D1}, {0x113D3, 0x113D3}, {0x11400, 0x11434}, {0x11447, 0x1144A},
    {0x1145F, 0x11461}, {0x11480, 0x114AF}, {0x114C4, 0x114C5}, {0x114C7, 0x114C7},
    {0x11580, 0x115AE}, {0x115D8, 0x115DB}, {0x11600, 0x1162F}, {0x11644, 0x11644},
    {0x11680, 0x116AA}, {0x116B8, 0x116B8}, {0x11700, 0x1171A}, {0x11740, 0x11746},
    {0x11800, 0x1182B}, {0x118A0, 0x118DF}, {0x118FF, 0x11906}, {0x11909, 0x11909},
    {0x1190C, 0x11913}, {0x11915, 0x11916}, {0x11918, 0x1192F}, {0x1193F, 0x1193F},
    {0x11941, 0x11941}, {0x119A0, 0x119A7}, {0x119AA, 0x119D0}, {0x119E1, 0x119E1},
    {0x119E3, 0x119E3}, {0x11A00, 0x11A00}, {0x11A0B, 0x11A32}, {0x11A3A, 0x11A3A},
    {0x11A50, 0x11A50}, {0x11A5C, 0x11A89}, {0x11A9D, 0x11A9D}, {0x11AB0, 0x11AF8},
    {0x11BC0, 0x11BE0}, {0x11C00, 0x11C08}, {0x11C0A, 0x11C2E}, {0x11C40, 0x11C40},
    {0x11C72, 0x11C8F}, {0x11D00, 0x11D06}, {0x11D08, 0x11D09}, {0x11D0B, 0x11D30},
    {0x11D46, 0x11D46}, {0x11D60, 0x11D65}, {0x11D67, 0x11D68}, {0x11D6A, 0x11D89},
    {0x11D98, 0x11D98}, {0x11DB0, 0x11DDB}, {0x11EE0, 0x11EF2}, {0x11F02, 0x11F02},
    {0x11F04, 0x11F10}, {0x11F12, 0x11F33}, {0x11FB0, 0x11FB0}, {0x12000, 0x12399},
    {0x12480, 0x12543}, {0x12F90, 0x12FF0}, {0x13000, 0x1342F}, {0x13441, 0x13446},
    {0x13460, 0x143FA}, {0x14400, 0x14646}, {0x16100, 0x1611D}, {0x16800, 0x16A38},
    {0x16A40, 0x16A5E}, {0x16A70, 0x16ABE}, {0x16AD0, 0x16AED}, {0x16B00, 0x16B2F},
    {0x16B40, 0x16B43}, {0x16B63, 0x16B77}, {0x16B7D, 0x16B8F}, {0x16D40, 0x16D6C},
    {0x16E40, 0x16E7F}, {0x16EA0, 0x16EB8}, {0x16EBB, 0x16ED3}, {0x16F00, 0x16F4A},
    {0x16F50, 0x16F50}, {0x16F93, 0x16F9F}, {0x16FE0, 0x16FE1}, {0x16FE3, 0x16FE3},
    {0x16FF2, 0x16FF3}, {0x17000, 0x18CD5}, {0x18CFF, 0x18D1E}, {0x18D80, 0x18DF2},
    {0x1AFF0, 0x1AFF3}, {0x1AFF5, 0x1AFFB}, {0x1AFFD, 0x1AFFE}, {0x1B000, 0x1B122},
    {0x1B132, 0x1B132}, {0x1B150, 0x1B152}, {0x1B155, 0x1B155}, {0x1B164, 0x1B167},
    {0x1B170, 0x1B2FB}, {0x1BC00, 0x1BC6A}, {0x1BC70, 0x1BC7C}, {0x1BC80, 0x1BC88},
    {0x1BC90, 0x1BC99}, {0x1D400, 0x1D454}, {0x1D456, 0x1D49C}, {0x1D49E, 0x1D49F},
    {0x1D4A2, 0x1D4A2}, {0x1D4A5, 0x1D4A6}, {0x1D4A9, 0x1D4AC}, {0x1D4AE, 0x1D4B9},
    {0x1D4BB, 0x1D4BB}, {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A},
    {0x1D50D, 0x1D514}, {0x1D516, 0x1D51C}, {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E},
    {0x1D540, 0x1D544}, {0x1D546, 0x1D546}, {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5},
    {0x1D6A8, 0x1D6C0}, {0x1D6C2, 0x1D6DA}, {0x1D6DC, 0x1D6FA}, {0x1D6FC, 0x1D714},
    {0x1D716, 0x1D734}, {0x1D736, 0x1D74E}, {0x1D750, 0x1D76E}, {0x1D770, 0x1D788},
    {0x1D78A, 0x1D7A8}, {0x1D7AA, 0x1D7C2}, {0x1D7C4, 0x1D7CB}, {0x1DF00, 0x1DF1E},
    {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E100, 0x1E12C}, {0x1E137, 0x1E13D},
    {0x1E14E, 0x1E14E}, {0x1E290, 0x1E2AD}, {0x1E2C0, 0x1E2EB}, {0x1E4D0, 0x1E4EB},
    {0x1E5D0, 0x1E5ED}, {0x1E5F0, 0x1E5F0}, {0x1E6C0, 0x1E6DE}, {0x1E6E0, 0x1E6E2},
    {0x1E6E4, 0x1E6E5}, {0x1E6E7, 0x1E6ED}, {0x1E6F0, 0x1E6F4}, {0x1E6FE, 0x1E6FF},
    {0x1E7E0, 0x1E7E6}, {0x1E7E8, 0x1E7EB}, {0x1E7ED, 0x1E7EE}, {0x1E7F0, 0x1E7FE},
    {0x1E800, 0x1E8C4}, {0x1E900, 0x1E943}, {0x1E94B, 0x1E94B}, {0x1EE00, 0x1EE03},
    {0x1EE05, 0x1EE1F}, {0x1EE21, 0x1EE22}, {0x1EE24, 0x1EE24}, {0x1EE27, 0x1EE27},
    {0x1EE29, 0x1EE32}, {0x1EE34, 0x1EE37}, {0x1EE39, 0x1EE39}, {0x1EE3B, 0x1EE3B},
    {0x1EE42, 0x1EE42}, {0x1EE47, 0x1EE47}, {0x1EE49, 0x1EE49}, {0x1EE4B, 0x1EE4B},
    {0x1EE4D, 0x1EE4F}, {0x1EE51, 0x1EE52}, {0x1EE54, 0x1EE54}, {0x1EE57, 0x1EE57},
    {0x1EE59, 0x1EE59}, {0x1EE5B, 0x1EE5B}, {0x1EE5D, 0x1EE5D}, {0x1EE5F, 0x1EE5F},
    {0x1EE61, 0x1EE62}, {0x1EE64, 0x1EE64}, {0x1EE67, 0x1EE6A}, {0x1EE6C, 0x1EE72},
    {0x1EE74, 0x1EE77}, {0x1EE79, 0x1EE7C}, {0x1EE7E, 0x1EE7E}, {0x1EE80, 0x1EE89},
    {0x1EE8B, 0x1EE9B}, {0x1EEA1, 0x1EEA3}, {0x1EEA5, 0x1EEA9}, {0x1EEAB, 0x1EEBB},
    {0x20000, 0x2A6DF}, {0x2A700, 0x2B81D}, {0x2B820, 0x2CEAD}, {0x2CEB0, 0x2EBE0},
    {0x2EBF0, 0x2EE5D}, {0x2F800, 0x2FA1D}, {0x30000, 0x3134A}, {0x31350, 0x33479},
};
constexpr CodeRange kNumberRanges[] = {
    {0x30, 0x39}, {0xB2, 0xB3}, {0xB9, 0xB9}, {0xBC, 0xBE}, {0x660, 0x669}, {0x6F0, 0x6F9},
    {0x7C0, 0x7C9}, {0x966, 0x96F}, {0x9E6, 0x9EF}, {0x9F4, 0x9F9}, {0xA66, 0xA6F}, {0xAE6, 0xAEF},
    {0xB66, 0xB6F}, {0xB72, 0xB77}, {0xBE6, 0xBF2}, {0xC66, 0xC6F}, {0xC78, 0xC7E}, {0xCE6, 0xCEF},
    {0xD58, 0xD5E}, {0xD66, 0xD78}, {0xDE6, 0xDEF}, {0xE50, 0xE59}, {0xED0, 0xED9}, {0xF20, 0xF33},
    {0x1040, 0x1049}, {0x1090, 0x1099}, {0x1369, 0x137C}, {0x16EE, 0x16F0}, {0x17E0, 0x17E9},
    {0x17F0, 0x17F9}, {0x1810, 0x1819}, {0x1946, 0x194F}, {0x19D0, 0x19DA}, {0x1A80, 0x1A89},
    {0x1A90, 0x1A99}, {0x1B50, 0x1B59}, {0x1BB0, 0x1BB9}, {0x1C40, 0x1C49}, {0x1C50, 0x1C59},
    {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2182}, {0x2185, 0x2189},
    {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793}, {0x2CFD, 0x2CFD}, {0x3007, 0x3007},
    {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3192, 0x3195}, {0x3220, 0x3229}, {0x3248, 0x324F},
    {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF}, {0xA620, 0xA629}, {0xA6E6, 0xA6EF},
    {0xA830, 0xA835}, {0xA8D0, 0xA8D9}, {0xA900, 0xA909}, {0xA9D0, 0xA9D9}, {0xA9F0, 0xA9F9},
    {0xAA50, 0xAA59}, {0xABF0, 0xABF9}, {0xFF10, 0xFF19}, {0x10107, 0x10133}, {0x10140, 0x10178},
    {0x1018A, 0x1018B}, {0x102E1, 0x102FB}, {0x10320, 0x10323}, {0x10341, 0x10341},
    {0x1034A, 0x1034A}, {0x103D1, 0x103D5}, {0x104A0, 0x104A9}, {0x10858, 0x1085F},
    {0x10879, 0x1087F}, {0x108A7, 0x108AF}, {0x108FB, 0x108FF}, {0x10916, 0x1091B},
    {0x109BC, 0x109BD}, {0x109C0, 0x109CF}, {0x109D2, 0x109FF}, {0x10A40, 0x10A48},
    {0x10A7D, 0x10A7E}, {0x10A9D, 0x10A9F}, {0x10AEB, 0x10AEF}, {0x10B58, 0x10B5F},
    {0x10B78, 0x10B7F}, {0x10BA9, 0x10BAF}, {0x10CFA, 0x10CFF}, {0x10D30, 0x10D39},
    {0x10D40, 0x10D49}, {0x10E60, 0x10E7E}, {0x10F1D, 0x10F26}, {0x10F51, 0x10F54},
    {0x10FC5, 0x10FCB}, {0x11052, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F},
    {0x111D0, 0x111D9}, {0x111E1, 0x111F4}, {0x112F0, 0x112F9}, {0x11450, 0x11459},
    {0x114D0, 0x114D9}, {0x11650, 0x11659}, {0x116C0, 0x116C9}, {0x116D0, 0x116E3},
    {0x11730, 0x1173B}, {0x118E0, 0x118F2}, {0x11950, 0x11959}, {0x11BF0, 0x11BF9},
    {0x11C50, 0x11C6C}, {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x11DE0, 0x11DE9},
    {0x11F50, 0x11F59}, {0x11FC0, 0x11FD4}, {0x12400, 0x1246E}, {0x16130, 0x16139},
    {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59}, {0x16B5B, 0x16B61},
    {0x16D70, 0x16D79}, {0x16E80, 0x16E96}, {0x16FF4, 0x16FF6}, {0x1CCF0, 0x1CCF9},
    {0x1D2C0, 0x1D2D3}, {0x1D2E0, 0x1D2F3}, {0x1D360, 0x1D378}, {0x1D7CE, 0x1D7FF},
    {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9}, {0x1E4F0, 0x1E4F9}, {0x1E5F1, 0x1E5FA},
    {0x1E8C7, 0x1E8CF}, {0x1E950, 0x1E959}, {0x1EC71, 0x1ECAB}, {0x1ECAD, 0x1ECAF},
    {0x1ECB1, 0x1ECB4}, {0x1ED01, 0x1ED2D}, {0x1ED2F, 0x1ED3D}, {0x1F100, 0x1F10C},
    {0x1FBF0, 0x1FBF9},
};
constexpr CodeRange kSpaceRanges[] = {
    {0x9, 0xD}, {0x20, 0x20}, {0x85, 0x85}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};
// clang-format on

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

template <size_t N>
bool in_ranges(const CodeRange (&r)[N], uint32_t cp) {
  const CodeRange* it = std::upper_bound(r, r + N, cp, [](uint32_t v, const CodeRange& x) {
    return v < x.lo;
  });
  return it != r && cp <= (it - 1)->hi;
}

uint8_t classify_slow(uint32_t cp) {
  if (in_ranges(kSpaceRanges, cp)) return kSpace;
  if (in_ranges(kLetterRanges, cp)) return kLetter;
  if (in_ranges(kNumberRanges, cp)) return kNumber;
  return kOther;
}

const std::array<uint8_t, 256>& latin1_classes() {
  static const std::array<uint8_t, 256> table = [] {
    std::array<uint8_t, 256> t{};
    for (uint32_t c = 0; c < 256; ++c) t[c] = classify_slow(c);
    return t;
  }();
  return table;
}

struct CodePoint {
  uint8_t cls;
  uint8_t len;  // bytes
};

bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

// Decodes the code point at byte i (i < n) and classifies it. Invalid UTF-8: one byte, kOther.
inline CodePoint code_point_at(const unsigned char* s, size_t n, size_t i,
                               const std::array<uint8_t, 256>& latin1) {
  const unsigned char c = s[i];
  if (c < 0x80) return {latin1[c], 1};
  uint32_t cp = 0;
  uint8_t len = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    if (i + 1 < n && is_cont(s[i + 1])) cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu), len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    if (i + 2 < n && is_cont(s[i + 1]) && is_cont(s[i + 2])) {
      cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
      if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) len = 3;
    }
  } else if (c >= 0xF0 && c <= 0xF4) {
    if (i + 3 < n && is_cont(s[i + 1]) && is_cont(s[i + 2]) && is_cont(s[i + 3])) {
      cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
           (s[i + 3] & 0x3Fu);
      if (cp >= 0x10000 && cp <= 0x10FFFF) len = 4;
    }
  }
  if (len == 0) return {kOther, 1};
  return {cp < 256 ? latin1[cp] : classify_slow(cp), len};
}

// Calls emit(begin, end) for each GPT-2 pre-tokenization piece, in order, until it returns
// false.
template <class Emit>
void for_each_piece(std::string_view text, Emit&& emit) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const auto& latin1 = latin1_classes();
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    const unsigned char c = s[i];
    // 's|'t|'re|'ve|'m|'ll|'d
    if (c == '\'' && i + 1 < n) {
      const unsigned char a = s[i + 1];
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        if (!emit(start, i + 2)) return;
        i += 2;
        continue;
      }
      if (i + 2 < n) {
        const unsigned char b = s[i + 2];
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
          if (!emit(start, i + 3)) return;
          i += 3;
          continue;
        }
      }
    }
    CodePoint cur = code_point_at(s, n, i, latin1);
    // ' ?' before a letter, number or other run: take the space when the next char is no space.
    if (c == ' ' && i + 1 < n) {
      const CodePoint next = code_point_at(s, n, i + 1, latin1);
      if (next.cls != kSpace) {
        i += 1;
        cur = next;
      }
    }
    if (cur.cls != kSpace) {  // \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+
      i += cur.len;
      while (i < n) {
        const CodePoint x = code_point_at(s, n, i, latin1);
        if (x.cls != cur.cls) break;
        i += x.len;
      }
      if (!emit(start, i)) return;
      continue;
    }
    // \s+(?!\S) | \s+ : a whitespace run, less its last char when a non-space follows.
    size_t j = i, last = i, count = 0;
    while (j < n) {
      const CodePoint x = code_point_at(s, n, j, latin1);
      if (x.cls != kSpace) break;
      last = j;
      j += x.len;
      ++count;
    }
    i = (j == n || count == 1) ? j : last;
    if (!emit(start, i)) return;
  }
}

// GPT-2's bytes_to_unicode(): byte -> printable code point, and its inverse.
struct ByteUnicode {
  uint32_t to_cp[256];
  int16_t to_byte[324];
  ByteUnicode() {
    std::vector<int> bs;
    for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
    std::vector<bool> seen(256, false);
    for (int b : bs) seen[b] = true, to_cp[b] = static_cast<uint32_t>(b);
    int extra = 0;
    for (int b = 0; b < 256; ++b)
      if (!seen[b]) to_cp[b] = static_cast<uint32_t>(256 + extra++);
    std::fill(std::begin(to_byte), std::end(to_byte), int16_t{-1});
    for (int b = 0; b < 256; ++b) to_byte[to_cp[b]] = static_cast<int16_t>(b);
  }
};

const ByteUnicode& byte_unicode() {
  static const ByteUnicode bu;
  return bu;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// A GPT-2 token in its unicode form ("Ġthe") -> the raw bytes it stands for (" the").
// Returns false when a char is not one of bytes_to_unicode's 256 symbols.
bool symbols_to_bytes(std::string_view sym, std::string& out) {
  const auto& bu = byte_unicode();
  const auto* s = reinterpret_cast<const unsigned char*>(sym.data());
  out.clear();
  for (size_t i = 0; i < sym.size();) {
    uint32_t cp;
    const unsigned char c = s[i];
    if (c < 0x80) {
      cp = c, i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < sym.size()) {
      cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu), i += 2;
    } else {
      return false;  // every symbol is below U+0144, so at most two bytes
    }
    if (cp >= 324 || bu.to_byte[cp] < 0) return false;
    out.push_back(static_cast<char>(bu.to_byte[cp]));
  }
  return true;
}

// A minimal parser for one JSON object whose values are integers: {"tok": 12, ...}.
class JsonIntObjectParser {
 public:
  JsonIntObjectParser(std::string_view s, const std::string& where) : s_(s), where_(where) {}

  template <class F>
  void parse(F&& on_entry) {
    ws();
    expect('{');
    ws();
    if (peek() == '}') {
      ++i_;
      return;
    }
    std::string key;
    while (true) {
      ws();
      parse_string(key);
      ws();
      expect(':');
      ws();
      on_entry(key, parse_int());
      ws();
      const char c = next();
      if (c == '}') break;
      if (c != ',') fail(fmt::format("expected ',' or '}}' but found '{}'", c));
    }
    ws();
    if (i_ != s_.size()) fail("trailing characters after the object");
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(fmt::format("{}: malformed JSON at byte {}: {}", where_, i_, msg));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  char next() {
    if (i_ >= s_.size()) fail("unexpected end of input");
    return s_[i_++];
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }
  void expect(char c) {
    const char got = next();
    if (got != c) fail(fmt::format("expected '{}' but found '{}'", c, got));
  }
  uint32_t hex4() {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = next();
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else fail(fmt::format("bad hex digit '{}' in \\u escape", c));
    }
    return v;
  }
  void parse_string(std::string& out) {
    out.clear();
    expect('"');
    while (true) {
      const char c = next();
      if (c == '"') return;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      const char e = next();
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // surrogate pair
            if (next() != '\\' || next() != 'u') fail("lone high surrogate in \\u escape");
            const uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail(fmt::format("bad low surrogate {:#x}", lo));
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail(fmt::format("lone low surrogate {:#x}", cp));
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(fmt::format("unknown escape '\\{}'", e));
      }
    }
  }
  int64_t parse_int() {
    bool neg = false;
    if (peek() == '-') neg = true, ++i_;
    if (!(peek() >= '0' && peek() <= '9')) fail("expected an integer value");
    int64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + (s_[i_++] - '0');
      if (v > (int64_t{1} << 40)) fail("integer value too large");
    }
    if (peek() == '.' || peek() == 'e' || peek() == 'E') fail("expected an integer value");
    return neg ? -v : v;
  }

  std::string_view s_;
  const std::string& where_;
  size_t i_ = 0;
};

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("error reading '{}'", path));
  return ss.str();
}

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// The word cache holds at most kMaxCacheBytes (keys, ids and a per-entry estimate of the
// map's own overhead) and never a word longer than kMaxCachedWordBytes: when full it is
// emptied and refilled by the words in use.
constexpr size_t kMaxCacheBytes = size_t{8} << 20;
constexpr size_t kMaxCachedWordBytes = 128;
constexpr size_t kCacheEntryOverhead = 96;
size_t cache_entry_bytes(size_t word_bytes, size_t ids) {
  return word_bytes + ids * sizeof(int32_t) + kCacheEntryOverhead;
}

}  // namespace

struct BpeTokenizer::Cache {
  std::mutex mu;
  std::unordered_map<std::string, std::vector<int32_t>, SvHash, std::equal_to<>> words;
  size_t bytes = 0;  // cache_entry_bytes() summed over `words`
};

BpeTokenizer::BpeTokenizer() : cache_(std::make_unique<Cache>()) {}
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

BpeTokenizer BpeTokenizer::load(const std::string& dir) {
  const std::string enc_path = dir + "/encoder.json";
  const std::string bpe_path = dir + "/vocab.bpe";
  const std::string enc = read_whole_file(enc_path);
  const std::string bpe = read_whole_file(bpe_path);
  return from_strings(enc, bpe, dir);
}

BpeTokenizer BpeTokenizer::from_strings(std::string_view encoder_json, std::string_view vocab_bpe,
                                        const std::string& where) {
  BpeTokenizer t;
  // encoder.json: symbols -> id.
  std::vector<std::pair<std::string, int64_t>> entries;
  const std::string enc_where = where + "/encoder.json";
  JsonIntObjectParser(encoder_json, enc_where).parse([&](const std::string& k, int64_t v) {
    entries.emplace_back(k, v);
  });
  TANDEM_CHECK(!entries.empty(), "{}: no tokens", enc_where);
  const size_t vocab = entries.size();
  TANDEM_CHECK(vocab <= 65536, "{}: {} tokens, more than the 65536 a uint16 shard holds",
               enc_where, vocab);
  t.id_bytes_.assign(vocab, std::string());
  std::vector<bool> used(vocab, false);
  std::unordered_map<std::string, int32_t, SvHash, std::equal_to<>> bytes_to_id;
  bytes_to_id.reserve(vocab * 2);
  std::string bytes;
  for (const auto& [sym, id] : entries) {
    TANDEM_CHECK(id >= 0 && static_cast<size_t>(id) < vocab,
                 "{}: token '{}' has id {}, outside [0, {}) (ids must be dense)", enc_where, sym,
                 id, vocab);
    TANDEM_CHECK(!used[id], "{}: id {} is given to two tokens (second: '{}')", enc_where, id, sym);
    used[id] = true;
    if (sym == "<|endoftext|>") {
      t.eot_id_ = static_cast<int32_t>(id);
      bytes = sym;
    } else if (!symbols_to_bytes(sym, bytes)) {
      throw Error(fmt::format("{}: token '{}' (id {}) has a char outside GPT-2's byte alphabet",
                              enc_where, sym, id));
    }
    t.id_bytes_[id] = bytes;
    if (static_cast<int64_t>(id) != t.eot_id_) t.max_token_bytes_ = std::max(t.max_token_bytes_, bytes.size());
    if (sym != "<|endoftext|>") bytes_to_id.emplace(bytes, static_cast<int32_t>(id));
  }
  TANDEM_CHECK(t.eot_id_ >= 0, "{}: no <|endoftext|> token", enc_where);
  for (int b = 0; b < 256; ++b) {
    const auto it = bytes_to_id.find(std::string(1, static_cast<char>(b)));
    TANDEM_CHECK(it != bytes_to_id.end(), "{}: no token for the single byte {:#04x}", enc_where,
                 b);
    t.byte_id_[b] = it->second;
  }
  // vocab.bpe: "#version" line, then one merge "left right" per line, by rank.
  const std::string bpe_where = where + "/vocab.bpe";
  size_t pos = 0, line_no = 0;
  int rank = 0;
  std::string left, right;
  while (pos < vocab_bpe.size()) {
    size_t end = vocab_bpe.find('\n', pos);
    if (end == std::string_view::npos) end = vocab_bpe.size();
    std::string_view line = vocab_bpe.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    const size_t sp = line.find(' ');
    const bool two = sp != std::string_view::npos && sp > 0 && sp + 1 < line.size() &&
                     line.find(' ', sp + 1) == std::string_view::npos;
    TANDEM_CHECK(two, "{} line {}: expected two symbols separated by one space, got '{}'",
                 bpe_where, line_no, line);
    const bool ok_l = symbols_to_bytes(line.substr(0, sp), left);
    const bool ok_r = symbols_to_bytes(line.substr(sp + 1), right);
    TANDEM_CHECK(ok_l && ok_r, "{} line {}: '{}' has a char outside GPT-2's byte alphabet",
                 bpe_where, line_no, line);
    const auto il = bytes_to_id.find(left), ir = bytes_to_id.find(right);
    const auto im = bytes_to_id.find(left + right);
    TANDEM_CHECK(il != bytes_to_id.end() && ir != bytes_to_id.end() && im != bytes_to_id.end(),
                 "{} line {}: merge '{}' uses or makes a token missing from encoder.json",
                 bpe_where, line_no, line);
    // Later duplicates overwrite earlier ones, as dict(zip(merges, range(n))) does in GPT-2.
    t.merges_[pair_key(il->second, ir->second)] =
        (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(im->second);
    ++rank;
  }
  TANDEM_CHECK(rank > 0, "{}: no merges", bpe_where);
  t.num_merges_ = rank;
  return t;
}

// BPE of one pre-tokenized word, exactly as GPT-2's loop (merge every occurrence of the
// lowest-ranked adjacent pair, left to right, then look again) but in O(n log n): the word is
// a linked list of symbols, and a min-heap holds (rank, position) of candidate pairs. All the
// entries of one rank are one pair (a rank names one merge); they pop in position order, which
// is GPT-2's left-to-right pass, and an entry whose symbols changed since it was pushed is
// skipped. Pairs that a merge creates are pushed only after that rank's pass, as GPT-2 looks
// for the next pair only after the pass (none of them can have the pass's own rank: they
// contain the merged symbol, which is neither of the pair's two).
void BpeTokenizer::bpe_word(std::string_view piece, std::vector<int32_t>& out) const {
  const auto* p = reinterpret_cast<const unsigned char*>(piece.data());
  const size_t n = piece.size();
  std::vector<int32_t> sym(n);
  std::vector<int32_t> next(n), prev(n);  // -1: none
  for (size_t i = 0; i < n; ++i) {
    sym[i] = byte_id_[p[i]];
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
    prev[i] = static_cast<int32_t>(i) - 1;
  }
  struct Cand {
    uint32_t rank;
    int32_t pos;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Cand> heap, born;
  auto rank_of = [&](int32_t i) -> uint32_t {  // UINT32_MAX: no merge for (i, next[i])
    if (i < 0 || next[i] < 0) return UINT32_MAX;
    const auto it = merges_.find(pair_key(sym[i], sym[next[i]]));
    return it == merges_.end() ? UINT32_MAX : static_cast<uint32_t>(it->second >> 32);
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(n); ++i)
    if (const uint32_t r = rank_of(i); r != UINT32_MAX) heap.push_back({r, i});
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  while (!heap.empty()) {
    const uint32_t rank = heap.front().rank;
    while (!heap.empty() && heap.front().rank == rank) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<>());
      const int32_t i = heap.back().pos;
      heap.pop_back();
      if (rank_of(i) != rank) continue;  // stale: a neighbour merged since it was pushed
      const uint64_t merged = merges_.find(pair_key(sym[i], sym[next[i]]))->second;
      sym[i] = static_cast<int32_t>(merged & 0xFFFFFFFFu);
      const int32_t gone = next[i];
      next[i] = next[gone];
      if (next[i] >= 0) prev[next[i]] = i;
      sym[gone] = -1;
      if (prev[i] >= 0) born.push_back({0, prev[i]});
      born.push_back({0, i});
    }
    for (const Cand& c : born)
      if (sym[c.pos] >= 0)
        if (const uint32_t r = rank_of(c.pos); r != UINT32_MAX) {
          heap.push_back({r, c.pos});
          std::push_heap(heap.begin(), heap.end(), std::greater<>());
        }
    born.clear();
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(sym[i]);
}

void BpeTokenizer::bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_id_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (piece.size() > kMaxCachedWordBytes) {  // rare, and a cache of them only grows
    bpe_word(piece, out);
    return;
  }
  Cache& c = *cache_;
  if (const auto it = c.words.find(piece); it != c.words.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t first = out.size();
  bpe_word(piece, out);
  std::vector<int32_t> w(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
  const size_t cost = cache_entry_bytes(piece.size(), w.size());
  if (c.bytes + cost > kMaxCacheBytes) {
    c.words = decltype(c.words)();  // frees the buckets too
    c.bytes = 0;
  }
  c.words.emplace(std::string(piece), std::move(w));
  c.bytes += cost;
}

void BpeTokenizer::encode_into(std::string_view utf8, std::vector<int32_t>& out) const {
  std::lock_guard<std::mutex> lock(cache_->mu);
  for_each_piece(utf8, [&](size_t b, size_t e) {
    bpe_piece(utf8.substr(b, e - b), out);
    return true;
  });
}

bool BpeTokenizer::encode_bounded(std::string_view utf8, size_t max_tokens,
                                  std::vector<int32_t>& out) const {
  out.clear();
  // Every token stands for at most max_token_bytes_ bytes: a longer text cannot fit.
  if (utf8.size() > max_tokens * max_token_bytes_) return false;
  std::lock_guard<std::mutex> lock(cache_->mu);
  bool fits = true;
  for_each_piece(utf8, [&](size_t b, size_t e) {
    const size_t at_least = (e - b + max_token_bytes_ - 1) / max_token_bytes_;
    if (out.size() + at_least > max_tokens) return fits = false;
    bpe_piece(utf8.substr(b, e - b), out);
    return fits = out.size() <= max_tokens;
  });
  if (!fits) out.clear();
  return fits;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view utf8) const {
  std::vector<int32_t> out;
  out.reserve(utf8.size() / 3 + 4);
  encode_into(utf8, out);
  return out;
}

size_t BpeTokenizer::cache_bytes() const {
  std::lock_guard<std::mutex> lock(cache_->mu);
  return cache_->bytes;
}

const std::string& BpeTokenizer::token_bytes(int32_t id) const {
  TANDEM_CHECK(id >= 0 && id < vocab_size(), "token id {} outside [0, {})", id, vocab_size());
  return id_bytes_[static_cast<size_t>(id)];
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size() * 4);
  for (const int32_t id : ids) out += token_bytes(id);
  return out;
}

std::vector<std::string_view> BpeTokenizer::pretokenize(std::string_view utf8) {
  std::vector<std::string_view> pieces;
  for_each_piece(utf8, [&](size_t b, size_t e) {
    pieces.push_back(utf8.substr(b, e - b));
    return true;
  });
  return pieces;
}

}  // namespace tandem
