"""The words features version 6 counts in a file's bytes and UTF-16 strings (``convert.contentfeatures``).

Chosen by ``scripts/string_words.py`` (the words of the default's training files ranked by chi-squared
between presence and label), 2026-12-03:

    .venv/bin/python scripts/string_words.py ~/.cache/malvision/caches/pe-features-v16 --top 400 --write src/malvision/convert/stringwords.py

Lower case, 4 to 24 letters (``contentfeatures.words_of``). Fixed: a vector of this version always
holds these words, in this order."""

WORDS: tuple[str, ...] = tuple(
    """
    requireadministrator terminatethread physicaldrive malware highestavailable rtladjustprivilege ntraiseharderror
    disabletaskmgr wwwpws exitprocess uihd copyfilea winexec svchost uqhd waveoutopen sshu ssvwh waveoutprepareheader
    waveoutwrite virtualalloc virus pathremoveargsw pwws waveoutunprepareheader qqsuvw ransomware bitblt
    getmodulefilenamea taskmgr trojan regsetvalueexa currentversion getsystemmetrics stretchblt ppvwp shellexecuteexa
    gwvj pathquotespacesa lsass writefile xpvss pppf winlogon enablewindowsformshighdp iautoresizing nlwww waveoutclose
    qqswj createprocessa qqsv rtlunwind pankoza accdb urldownloadtofilea winmm shgetfolderlocation setfilepointer csrss
    createservicea createthread wsvpp getdesktopwindow pppppws virtualfree svwj vjazf pqssh sqlitedb ywww createfilea
    selectobject svww pvvh shell deletefilea registerservicectrlhandl findresourcea loadlibrarya svwuj getdc taskhost
    lstrlena taskkill tmwws ufwwj wininet taskhosts xmbms lstrcata spssj sizeofresource inputrequester sspvss xptpsw
    explorer getcommandlinea settingsdesigner sysnative shellexecutea aapi ivmt createcompatibledc vgsw continuable ulsj
    createsolidbrush configure openservicea edata abcdefk ktakt knnf rtlsetprocessiscritical openscmanagera
    gpaddingxxpaddingpadding assemblyidentity advapi ppaddingxxpaddingpadding internetopena applicationsettingsbase
    narrow lstrcpya getwindowsdirectorya filter setbitmapbits zwclose disableregistrytools jpjcjnh vwubh
    dependentassembly xxpaddingpaddingxxpaddin getstartupinfoa startservicectrldispatch hqur getadaptersinfo
    setservicestatus pwqvr qssssj hhpxea hpxha lhtqef nrzle qefbf qetbf sealnrzbe sezlnrsbe srzln tbfwzik tbkwzi tikwz
    xhhpsea startservicea wwsh regdeletevaluea settingssinglefilegenera patblt deletedc vcruntime uqpxy asdfg asdfgh
    rpwsuq regedit loadresource wsprintfa txvp winrar uksh pathaddbackslashw plgblt dpis swuvj deleteobject mnses sdigdz
    taskhcst ngdefault setcompatibletextrenderi mspaint disablethreadlibrarycall cexit lookupprivilegevaluea capbdxz
    argv repos execute setcurrentdirectorya getcomputernamea ntoskrnl specific netuserenum wnetaddconnection fkawg lospn
    tjyaa ucdwjb wannacry kbfo asknextvol licensedlg rarsfx renamedlg replacefiledlg startdlg xuiq comctl
    enablevisualstyles func voltmd sleep kmicrosoft wnetcancelconnection fgiu yorx rduw getcurrentpackageid aazzd mgzrl
    msconfig nappr nfuhh vqfjfy zdoyo zrats rgmp clear pathquotespacesw kvnb messageboxa mozilla pssw qvvh releasedc
    getcpinfo findnextfilea deleteurlcacheentry processorarchitecture pathremovebackslashw adjusttokenprivileges qsvw
    sgrq ybxt ymri htqht pathrenameextensionw getprocesses autoscalemode asgregrhehr bigdog biteme cezhvb cmakne dcuqx
    fmvwr fuckme hxkmh lsasvs rislx rqqkp scahb shcservice starwars suwgs tduci trustno tuqua ujhhx updator welkome
    wflvkmk wodglslsh wupdator wxvnm zsxcd laoh lvmy rppz sfih bsod dlqgr fuckyou tigger wmsps destroy regqueryvalueexa
    bbiu idatx pshz exitwindowsex getconsolecp urpqqh createdirectorya netapi svwtk vsdx regcreatekeyexa skype bumble
    obdz editors getkeyboardtype ubpk ubxz yozn fehww fuck asshole fucker letmein sfxname tempmode uafr xgef ppppp
    processinformationlength zphd findfirstfilea yourapp iswindowvisible list python none enumresourcetypesw dsuvwh ghaz
    nwdg qwer wfnz wrys osxp pussy qkmj wkga getstringtypew dxybc fkwxt gcums gmmq hufanq hujqw iddpgp lhowu mgagaf
    qyzuc unhsf vosme vrust winrarsfxmappingfile wzkox ythae containercontrol processinformationclass yankees jmsctls
    sfxcmd movefilea lockresource qsvwh jxps shellexecuteexw wininit pdata qqsuv init values xdata orso vnaj xvvr
    computer getoemcp gettempfilenamea lcmapstringw register rwsup myapplication bwix igtr mustang olcf pczw wxnf
    ntsetinformationprocess tevu tencent expected heapfree getacp bphq ffyz harley lemb oqpp zwcreatefile mmmg
    coinitialize ahcn isrm nwbc
""".split()  # noqa: SIM905
)
