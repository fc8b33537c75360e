"""The words features version 6 counts in a file's strings (``convert.contentfeatures``).

Chosen by ``scripts/string_words.py`` (the words of the default's training files ranked by chi-squared
between presence and label), 2026-12-03:

    .venv/bin/python scripts/string_words.py ~/.cache/malvision/caches/pe-features-v16 --top 400 --write src/malvision/convert/stringwords.py

Lower case, 4 to 24 letters; a file's count of each is taken in its lower-cased strings. Fixed: a
vector of this version always holds these words, in this order."""

WORDS: tuple[str, ...] = tuple(
    """
    requireadministrator terminatethread physicaldrive malware highestavailable rtladjustprivilege ntraiseharderror
    disabletaskmgr wwwpws exitprocess copyfilea winexec svchost waveoutopen ssvwh waveoutprepareheader waveoutwrite pwws
    virtualalloc virus pathremoveargsw waveoutunprepareheader qqsuvw ransomware bitblt getmodulefilenamea taskmgr trojan
    regsetvalueexa currentversion getsystemmetrics stretchblt ppvwp shellexecuteexa pathquotespacesa lsass writefile
    xpvss winlogon enablewindowsformshighdp iautoresizing nlwww waveoutclose qqswj createprocessa rtlunwind pankoza
    accdb urldownloadtofilea winmm shgetfolderlocation setfilepointer csrss createservicea createthread wsvpp
    getdesktopwindow pppppws virtualfree vjazf pqssh sqlitedb createfilea selectobject shell deletefilea knnf
    registerservicectrlhandl findresourcea loadlibrarya svwuj getdc taskhost lstrlena taskkill tmwws ufwwj wininet
    taskhosts xmbms lstrcata spssj sizeofresource inputrequester ivmt sspvss xptpsw explorer getcommandlinea
    settingsdesigner wwsh aapi sysnative shellexecutea createcompatibledc continuable createsolidbrush configure
    openservicea edata abcdefk pshz ktakt rtlsetprocessiscritical openscmanagera gpaddingxxpaddingpadding
    assemblyidentity advapi ppaddingxxpaddingpadding internetopena applicationsettingsbase hqur narrow lstrcpya
    getwindowsdirectorya filter setbitmapbits zwclose disableregistrytools jpjcjnh urwj vwubh dependentassembly
    xxpaddingpaddingxxpaddin getstartupinfoa startservicectrldispatch getadaptersinfo setservicestatus pwqvr qssssj
    hhpxea hpxha lhtqef nrzle qefbf qetbf sealnrzbe sezlnrsbe srzln tbfwzik tbkwzi tikwz xhhpsea startservicea
    regdeletevaluea settingssinglefilegenera patblt deletedc vcruntime uqpxy asdfg asdfgh rpwsuq regedit loadresource
    wsprintfa winrar dpis pxhh vsdx pathaddbackslashw plgblt swuvj deleteobject mnses sdigdz taskhcst ngdefault
    setcompatibletextrenderi mspaint disablethreadlibrarycall cexit lookupprivilegevaluea capbdxz argv repos execute
    setcurrentdirectorya getcomputernamea ntoskrnl specific netuserenum wnetaddconnection fkawg lospn olcf tjyaa ucdwjb
    wannacry asknextvol licensedlg rarsfx renamedlg replacefiledlg startdlg comctl enablevisualstyles voltmd sleep
    kmicrosoft func wnetcancelconnection getcurrentpackageid aazzd bwix mgzrl msconfig nappr nfuhh vqfjfy ysjh zdoyo
    zrats ybxt clear pathquotespacesw messageboxa mozilla zikw releasedc getcpinfo findnextfilea deleteurlcacheentry
    processorarchitecture pathremovebackslashw adjusttokenprivileges htqht pathrenameextensionw getprocesses
    autoscalemode asgregrhehr bigdog biteme cezhvb cmakne dcuqx fmvwr fuckme hxkmh lsasvs rislx rqqkp scahb shcservice
    starwars suwgs tduci trustno tuqua ujhhx updator welkome wflvkmk wodglslsh wupdator wxvnm zsxcd ymri nwdg pczw ttsk
    vrmu wfnz wrys dlqgr ffyz fuckyou tigger ubxz wmsps destroy regqueryvalueexa idatx init exitwindowsex getconsolecp
    urpqqh createdirectorya netapi svwtk regcreatekeyexa skype bumble vnaj wcry editors getkeyboardtype bsod fehww obcx
    asshole fucker kkon letmein otaj awzd gqbm qzbj sfxname tempmode vixn list ppppp processinformationlength
    findfirstfilea yourapp iswindowvisible python enumresourcetypesw dsuvwh bphq bwky igtr pussy rgyv tjch wkga
    getstringtypew dxybc fkwxt gcums hufanq hujqw iddpgp lhowu mgagaf qyzuc unhsf vosme vrust winrarsfxmappingfile wrpt
    wzkox ythae containercontrol processinformationclass nyyq uglv yankees bewx jmsctls jvis sfxcmd movefilea
    lockresource qsvwh fixd shellexecuteexw wininit pdata qqsuv values xdata computer getoemcp gettempfilenamea
    lcmapstringw register rwsup myapplication mustang ntsetinformationprocess tencent expected tlht heapfree getacp cpkp
    duln harley kuvg zwcreatefile none coinitialize oemstring rtlupcaseunicodestringto sparky bexgye bkkwb boarb browcli
    cscapi devrtl dfscli ebmnuxt ggwqf hxooo mbdhl ntshrui oleaccrc olkhw rasadhlp rpcrtremote samcli uxwij wamhd winnsi
    fgad kqgr meax
""".split()  # noqa: SIM905
)
